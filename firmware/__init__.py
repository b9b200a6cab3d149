"""Prebuilt bare-metal RV64 guest images (``firmware/*.elf``; RV64IMAC, fpu.elf RV64IMAFDC).

Rebuild with ``make -C firmware``; see README.md in this directory.
"""

import os

# Image name -> one-line description (file: <name>.elf next to this module).
IMAGES = {
    "hello": "M-mode smoke test: banner, CSRs, ecall/illegal-instruction/timer traps, finisher pass",
    "bench": "deterministic ~300M-instruction integer workload (ALU, mul/div, memcpy, CRC32, heapsort)",
    "csrloop": "1,000,000 'csrr t0, mscratch' reads to time privileged-instruction round trips",
    "htif": "riscv-tests style image printing 'htif: hello' via tohost/fromhost and exiting with code 0",
    "bench-sv39": "bench's workload (same checksum) in S-mode under Sv39 paging with 4 KiB pages and hardware A/D",
    "sfence": "S-mode Sv39: 200,000 PTE remaps, each with sfence.vma and a checked read, to time sfence.vma exits",
    "faults": "S-mode Sv39: 100,000 store page faults mapped by an stvec handler, to time page-fault round trips",
    "mmioloop": "1,000,000 reads of the UART line status register to time MMIO exits",
    "csrwloop": "1,000,000 'csrw mscratch, t0' writes to time CSR-write exits",
    "ecallloop": "100,000 M-mode ecalls, each reflected into its own trap handler and mret'd",
    "sieloop": "500,000 kernel-style interrupt masks: 'csrrci t0, sstatus, SIE' then 'csrs sstatus, t0' (local_irq_save/restore)",
    "timerloop": "20,000 machine timer interrupts armed through mtimecmp and waited for with wfi",
    "fpu": "F and D: mstatus.FS, fcsr, reserved rounding modes, NaN boxing and every FP "
           "operation in every rounding mode, as a dump QEMU prints the same",
    "fpbench": "deterministic ~43M-instruction floating-point workload (FMA matrix multiply, "
               "n-body with sqrt/div, single-precision loops, conversions)",
    "canary": "keeps CANARY ^ address in 1 MiB of its RAM, checking it forever (isolation tests)",
    "echo": "echoes what it receives on the UART, upper-cased, until 'q' (console tests)",
    "spin": "spins with interrupts off, never exits or waits (fairness tests)",
    "probe": "hostile: looks for another VM's canary in every reachable address, by loads, "
             "stores and virtio-blk DMA (needs --disk FILE, --memory 128M)",
    "memwrite": "memory-writing workload (96 MiB filled, a hot 2 MiB rewritten 2,000 "
                "times, a checksum of it all) for live-migration benchmarks",
    "kernel": "S-mode teaching kernel (Sv39, timer-preempted user processes, demand paging; "
              "other harts started by SBI HSM); boot with --kernel kernel",
    "disk-reboot": "virtio-blk: writes a pattern, flushes, reboots and finds it again "
                   "(needs --disk FILE)",
    "disk-two": "virtio-blk: two disks, each keeps its own data (needs two --disk)",
    "disk-flush": "virtio-blk: writes 64 KiB, flushes, prints 'flush: done' and spins "
                  "(needs --disk FILE)",
    "disk-bench": "virtio-blk: sequential 4 KiB and 64 KiB writes and reads of 8 MiB "
                  "(needs --disk FILE of 16M)",
    "disk-journal": "virtio-blk: 16 rounds of writes, each acknowledged on the UART only "
                    "after its FLUSH (needs --disk FILE of 128K)",
    "smp-amo": "SMP: every hart hammers shared words with amoadd/amoswap/amomax/amominu/"
               "amoor/amoand/amoxor; exact totals (--vcpus N)",
    "smp-lrsc": "SMP: every hart hammers an LR/SC spinlock and lr/sc add loops; exact totals",
    "smp-ipi": "SMP: CLINT msip self-IPI, 10,000 ping-pong round trips between harts 0 and 1, "
               "a token ring over all harts",
    "smp-litmus": "SMP: a hart's sc fails after another hart stores to its LR's reservation "
                  "set (sw, sb, amoadd, lr/sc, sd, the same value, amoor 0)",
    "smp-bench": "SMP: every hart (up to 8) runs bench's workload on its own copy of its data; "
                 "hart 0 prints each one's checksum and instret",
    "smp-rfence": "SMP, S-mode under Sv39: SBI HSM hart_start, remote sfence.vma (page, ASID, "
                  "all, range) and remote fence.i seen by the other harts (boot with --kernel)",
}

# images that do not live at <name>.elf
FILES = {
    "probe": "disk/probe.elf",
    "kernel": "kernel/kernel.elf",
    "disk-reboot": "disk/reboot.elf",
    "disk-two": "disk/twodisks.elf",
    "disk-flush": "disk/flush.elf",
    "disk-bench": "disk/diskbench.elf",
    "disk-journal": "disk/journal.elf",
    "smp-amo": "smp/amo.elf",
    "smp-lrsc": "smp/lrsc.elf",
    "smp-ipi": "smp/ipi.elf",
    "smp-litmus": "smp/litmus.elf",
    "smp-bench": "smp/bench.elf",
    "smp-rfence": "smp/rfence.elf",
}


def path(name):
    """Absolute path of the prebuilt image *name* (a key of IMAGES)."""
    if name not in IMAGES:
        raise KeyError(name)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        FILES.get(name, name + ".elf"))
