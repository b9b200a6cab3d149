"""The hypervisor as the SBI implementation, for kernels booted without firmware.

An ECALL from virtual S-mode exits to here (RISC-V SBI specification v2.0):
a7 = extension id, a6 = function id, a0-a5 = arguments; the result is returned in
a0 (error) and a1 (value).  Implemented: Base, TIME, IPI, RFENCE, HSM, SRST,
DBCN, and the legacy extensions 0x00-0x08.
"""
from __future__ import annotations

from .csr import SSIP
from .vcpu import STARTED, STOPPED, SUSPENDED, Preempt

SUCCESS, ERR_FAILED, ERR_NOT_SUPPORTED, ERR_INVALID_PARAM = 0, -1, -2, -3
ERR_INVALID_ADDRESS, ERR_ALREADY_AVAILABLE = -5, -6

EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE = 0x10, 0x54494D45, 0x735049, 0x52464E43
EXT_HSM, EXT_SRST, EXT_DBCN = 0x48534D, 0x53525354, 0x4442434E
LEGACY = range(0x00, 0x09)
SPEC_VERSION = 2 << 24                 # v2.0
IMPL_ID = 0x6876                       # "hv": not in the SBI implementation-ID registry
MASK64 = (1 << 64) - 1

EXT_NAMES = {EXT_BASE: "base", EXT_TIME: "time", EXT_IPI: "ipi", EXT_RFENCE: "rfence",
             EXT_HSM: "hsm", EXT_SRST: "srst", EXT_DBCN: "dbcn"}


class SbiFirmware:
    """SBI calls from the guest kernel, answered by the hypervisor."""

    def __init__(self, vm):
        self.vm = vm
        self.timecmp = [MASK64] * len(vm.vcpus)   # each hart's S-mode timer (sbi_set_timer)

    def call(self, hv) -> None:
        vcpu = hv.vcpu
        eid, fid = vcpu.get_x(17), vcpu.get_x(16)
        args = [vcpu.get_x(10 + i) for i in range(6)]
        hv.stats.sbi[EXT_NAMES.get(eid, f"legacy {eid:#x}" if eid in LEGACY else hex(eid))] += 1
        vcpu.complete()                 # pc past the ecall; results below
        if eid in LEGACY:
            ret = self.legacy(hv, eid, args)
            if ret is not None:
                vcpu.set_x(10, ret & MASK64)
            return
        handler = self.EXTENSIONS.get(eid)
        err, value = (ERR_NOT_SUPPORTED, 0) if handler is None else handler(self, hv, fid, args)
        vcpu.set_x(10, err & MASK64)
        vcpu.set_x(11, value & MASK64)

    # ---- extensions ----
    def base(self, hv, fid, args):
        if fid == 0:
            return SUCCESS, SPEC_VERSION
        if fid == 1:
            return SUCCESS, IMPL_ID
        if fid == 2:
            return SUCCESS, 1
        if fid == 3:
            eid = args[0]
            return SUCCESS, int(eid in self.EXTENSIONS or eid in LEGACY)
        if fid in (4, 5, 6):            # mvendorid, marchid, mimpid
            return SUCCESS, 0
        return ERR_NOT_SUPPORTED, 0

    def time(self, hv, fid, args):
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        self.set_timer(hv, args[0])
        return SUCCESS, 0

    def set_timer(self, hv, value: int) -> None:
        self.timecmp[hv.hartid] = value
        hv.timers_changed()
        hv.check_interrupts()

    def targets(self, mask: int, base: int) -> list | None:
        """The vCPUs a hart mask names (SBI spec, "Hart list parameter"); None if it names
        a hart that does not exist."""
        vcpus = self.vm.vcpus
        if base == MASK64:
            return list(vcpus)
        out = []
        for i in range(64):
            if (mask >> i) & 1:
                if base + i >= len(vcpus):
                    return None
                out.append(vcpus[base + i])
        return out

    def ipi(self, hv, fid, args):
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        targets = self.targets(args[0], args[1])
        if targets is None:
            return ERR_INVALID_PARAM, 0
        for vc in targets:
            vc.hart.csr.mip_sw |= SSIP
        if hv in targets:
            hv.check_interrupts()
        return SUCCESS, 0

    def rfence(self, hv, fid, args):
        targets = self.targets(args[0], args[1])
        if targets is None:
            return ERR_INVALID_PARAM, 0
        if fid == 0:                    # remote FENCE.I: decoded code follows every store
            return SUCCESS, 0
        if fid in (1, 2):               # remote SFENCE.VMA (and by ASID)
            start, size = args[2], args[3]
            asid = args[4] & 0xFFFF if fid == 2 else None
            for vc in targets:
                if size == MASK64 or size > 64 * 4096 or (start == 0 and size == 0):
                    vc.vcpu.flush_tlb(None, asid)
                else:
                    for page in range(start & ~0xFFF, start + size, 4096):
                        vc.vcpu.flush_tlb(page, asid)
            return SUCCESS, 0
        return ERR_NOT_SUPPORTED, 0

    def hsm(self, hv, fid, args):
        """Hart state management: start a stopped hart at an address (S-mode, a0 = its
        hart id, a1 = opaque), stop the calling hart, report states, suspend as WFI."""
        vcpus = self.vm.vcpus
        if fid == 0:                    # hart_start(hartid, start_addr, opaque)
            if args[0] >= len(vcpus):
                return ERR_INVALID_PARAM, 0
            target = vcpus[args[0]]
            if target.hsm != STOPPED:
                return ERR_ALREADY_AVAILABLE, 0
            target.hart.reset(args[1])
            target.hart.enter_supervisor(a0=target.hartid, a1=args[2])
            target.waiting = False
            target.hsm = STARTED
            return SUCCESS, 0
        if fid == 1:                    # hart_stop: this hart leaves the scheduler's turns
            hv.hsm = STOPPED
            raise Preempt(waiting=False)
        if fid == 2:                    # hart_get_status
            if args[0] >= len(vcpus):
                return ERR_INVALID_PARAM, 0
            target = vcpus[args[0]]
            return SUCCESS, SUSPENDED if target.suspended else target.hsm
        if fid == 3:                    # hart_suspend: retentive suspend behaves as WFI
            if args[0] == 0:
                hv.vcpu.set_x(10, SUCCESS)
                hv.vcpu.set_x(11, 0)
                hv.suspended = True     # SUSPENDED until its next turn (run_quantum)
                hv.idle()               # (returns at once if an interrupt is pending)
                hv.suspended = False
                return SUCCESS, 0
            return ERR_NOT_SUPPORTED, 0
        return ERR_NOT_SUPPORTED, 0

    def srst(self, hv, fid, args):
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        kind, reason = args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFF
        if kind == 0:
            self.vm.power.poweroff(1 if reason == 1 else 0)
        if kind in (1, 2):
            self.vm.power.reset()
        return ERR_INVALID_PARAM, 0

    def dbcn(self, hv, fid, args):
        if fid == 0:                    # console_write(num_bytes, base_lo, base_hi)
            addr = args[1] | (args[2] << 32)
            try:
                data = self.vm.memory.read(addr, args[0])
            except (IndexError, OverflowError):
                return ERR_INVALID_PARAM, 0
            self.vm.console.output(data)
            return SUCCESS, len(data)
        if fid == 1:                    # console_read: what the UART has received
            addr = args[1] | (args[2] << 32)
            uart = self.vm.uart
            n = min(args[0], len(uart.rx))
            data = bytes(uart.rx.popleft() for _ in range(n))
            try:
                self.vm.memory.write(addr, data)
            except (IndexError, OverflowError):
                return ERR_INVALID_PARAM, 0
            return SUCCESS, n
        if fid == 2:                    # console_write_byte
            self.vm.console.output(bytes((args[0] & 0xFF,)))
            return SUCCESS, 0
        return ERR_NOT_SUPPORTED, 0

    EXTENSIONS = {EXT_BASE: base, EXT_TIME: time, EXT_IPI: ipi, EXT_RFENCE: rfence,
                  EXT_HSM: hsm, EXT_SRST: srst, EXT_DBCN: dbcn}

    # ---- legacy extensions (SBI v0.1) ----
    def legacy_targets(self, hv, mask_va: int) -> list | None:
        """The harts an SBI v0.1 hart mask names: a0 is the S-mode virtual address of an
        unsigned long whose bit i is hart i (0: every hart, as OpenSBI reads it); None if
        the kernel cannot read that address."""
        vcpus = self.vm.vcpus
        if mask_va == 0:
            return list(vcpus)
        pa, _cause = hv.vcpu.translate(mask_va)
        if pa is None or mask_va & 7:
            return None
        try:
            mask = int.from_bytes(self.vm.memory.read(pa, 8), "little")
        except (IndexError, OverflowError):
            return None
        return [vc for i, vc in enumerate(vcpus) if (mask >> i) & 1]

    def legacy(self, hv, eid, args):
        if eid == 0x00:
            self.set_timer(hv, args[0])
            return 0
        if eid == 0x01:
            self.vm.console.output(bytes((args[0] & 0xFF,)))
            return 0
        if eid == 0x02:
            rx = self.vm.uart.rx
            return rx.popleft() if rx else -1
        if eid == 0x03:
            hv.hart.csr.mip_sw &= ~SSIP
            return 0
        if eid in (0x04, 0x05, 0x06, 0x07):     # send_ipi, remote fence.i/sfence.vma
            targets = self.legacy_targets(hv, args[0])
            if targets is None:
                return ERR_INVALID_ADDRESS
            for vc in targets:
                if eid == 0x04:
                    vc.hart.csr.mip_sw |= SSIP
                else:                           # (fence.i too: a flush is harmless)
                    vc.vcpu.flush_tlb()
            if eid == 0x04 and hv in targets:
                hv.check_interrupts()
            return 0
        self.vm.power.poweroff(0)       # 0x08 shutdown
        return 0

