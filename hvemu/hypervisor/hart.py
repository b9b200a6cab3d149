"""A virtual hart: the core's vCPU plus the privileged state the hypervisor keeps for it.

The guest believes it runs in M-mode (or S/U); really the core runs it deprivileged
and every privileged operation comes here.  This module follows the privileged
spec's trap rules: "Machine Trap Delegation Registers", "Machine Interrupt
Registers" (priorities and enables), MRET/SRET ("Trap-Return Instructions").
"""
from __future__ import annotations

from .._core import VCpu
from .csr import (
    ENVCFG_CBCFE,
    ENVCFG_CBIE_INVAL,
    ENVCFG_CBZE,
    FS_DIRTY,
    MEDELEG_WRITABLE,
    MEIP,
    MENVCFG_STCE,
    MIE,
    MPIE,
    MPP,
    MPP_SHIFT,
    MPRV,
    MSIP,
    MTIP,
    MXR,
    SEIP,
    SIE,
    SPIE,
    SPP,
    SSIP,
    STIP,
    SUM,
    TVM,
    M,
    S,
    VirtualCsrFile,
)

INTERRUPT = 1 << 63
MASK64 = (1 << 64) - 1
# interrupt priority order: MEI, MSI, MTI, SEI, SSI, STI
PRIORITY = [(MEIP, 11), (MSIP, 3), (MTIP, 7), (SEIP, 9), (SSIP, 1), (STIP, 5)]

CAUSE_NAMES = {
    0: "instruction address misaligned", 1: "instruction access fault",
    2: "illegal instruction", 3: "breakpoint", 4: "load address misaligned",
    5: "load access fault", 6: "store/AMO address misaligned", 7: "store/AMO access fault",
    8: "ecall from U-mode", 9: "ecall from S-mode", 11: "ecall from M-mode",
    12: "instruction page fault", 13: "load page fault", 15: "store/AMO page fault",
}
INTERRUPT_NAMES = {1: "supervisor software interrupt", 3: "machine software interrupt",
                   5: "supervisor timer interrupt", 7: "machine timer interrupt",
                   9: "supervisor external interrupt", 11: "machine external interrupt"}
PRIV_NAMES = {0: "U", 1: "S", 3: "M"}


def cause_name(cause: int) -> str:
    if cause & INTERRUPT:
        return INTERRUPT_NAMES.get(cause & ~INTERRUPT, f"interrupt {cause & ~INTERRUPT}")
    return CAUSE_NAMES.get(cause, f"exception {cause}")


class VirtualHart:
    """One guest hart: `vcpu` (the fast path's state) and `csr` (virtual privileged state)."""

    def __init__(self, vcpu: VCpu, hartid: int, clock):
        self.vcpu = vcpu
        self.hartid = hartid
        self.clock = clock
        self.native_counters = True
        # (clock.now looked up at each read: record/replay wraps it on the clock)
        self.csr = VirtualCsrFile(hartid, lambda: vcpu.instret, lambda: clock.now(), fpu=vcpu)
        self.priv = M
        self.last_trap: tuple[int, int, int] | None = None   # (cause, pc, instret)
        self.first_trap: tuple[int, int, int] | None = None  # the first of a chain of traps
        self._triggers_live = False       # the core may hold armed triggers

    def reset(self, pc: int) -> None:
        self.csr.reset()
        self.priv = M
        self.vcpu.pc = pc
        for i in range(32):
            self.vcpu.set_x(i, 0)
            self.vcpu.set_f(i, 0)
        self.vcpu.clear_reservation()
        self.last_trap = self.first_trap = None
        self.sync_mode()
        self.sync_envcfg()

    def enter_supervisor(self, a0: int, a1: int) -> None:
        """Start in S-mode as if SBI firmware had run: traps delegated as OpenSBI does,
        counters and Sstc open to S, the FPU on, a0/a1 set for the kernel."""
        c = self.csr
        c.medeleg = MEDELEG_WRITABLE & ~(1 << 9)     # all but ecall from S (the SBI's)
        c.mideleg = SSIP | STIP | SEIP
        c.mcounteren = 7
        # Sstc, and the cache-block operations for S as OpenSBI enables them
        c.menvcfg = MENVCFG_STCE | ENVCFG_CBIE_INVAL | ENVCFG_CBCFE | ENVCFG_CBZE
        c.fpu.fs = FS_DIRTY        # OpenSBI turns the FPU on (FS Dirty) and zeroes fcsr
        self.priv = S
        self.vcpu.set_x(10, a0)
        self.vcpu.set_x(11, a1)
        self.sync_mode()
        self.sync_envcfg()

    def sync_counters(self) -> None:
        """Push what the core needs to read cycle/time/instret itself (the native twin of
        the CSR handler for those reads), or a zero mask to have every read exit."""
        c = self.csr
        mask = 0
        timing = self.clock.core_time(self.vcpu) if self.clock is not None else None
        if self.native_counters:
            allowed, priv = c.counter_allowed, self.priv
            mask = allowed(0, priv) | allowed(1, priv) << 1 | allowed(2, priv) << 2
            if timing is None:
                mask &= ~2                           # time: only the hypervisor knows it
        per_tick, added, ticks = timing if timing is not None else (1, 0, 0)
        self.vcpu.set_counters(mask, per_tick, ticks, c.cycle_offset & MASK64,
                               c.instret_offset & MASK64, added)

    def sync_mode(self) -> None:
        """Push privilege and translation state into the core (as a VMCS write would)."""
        c = self.csr
        ms = c.mstatus
        ls_priv = (ms & MPP) >> MPP_SHIFT if (ms & MPRV and self.priv == M) else self.priv
        mode = c.satp >> 60
        self.vcpu.set_mode(self.priv, ls_priv, mode, (c.satp & ((1 << 44) - 1)) << 12,
                           bool(ms & SUM), bool(ms & MXR))
        self.vcpu.tvm = bool(ms & TVM)
        self.sync_counters()
        if self._triggers_live:
            self.sync_triggers()

    def sync_envcfg(self) -> None:
        """Push menvcfg and senvcfg: the core gates cbo.* in S and U by them."""
        self.vcpu.set_envcfg(self.csr.menvcfg, self.csr.senvcfg)

    def sync_triggers(self) -> None:
        """Push the debug triggers as they apply at this privilege and mstatus.MIE/SIE
        (call after any change of the trigger CSRs, the privilege, MIE/SIE or medeleg)."""
        c = self.csr
        if not c.triggers.configured and not self._triggers_live:
            return
        view = c.triggers.core_view(self.priv, c.mstatus, c.medeleg)
        self.vcpu.set_triggers(view)
        self._triggers_live = c.triggers.configured

    # ---- traps ----
    def take_trap(self, cause: int, tval: int, pc: int) -> str:
        """Deliver an exception or interrupt to the guest's own handler (virtual M or S).

        Returns "M" or "S", the mode that took it."""
        c = self.csr
        interrupt = bool(cause & INTERRUPT)
        code = cause & ~INTERRUPT
        deleg = c.mideleg if interrupt else c.medeleg
        self.vcpu.clear_reservation()
        if self.priv <= S and (deleg >> code) & 1:
            c.sepc = pc & ~1
            c.scause = cause
            c.stval = tval
            ms = c.mstatus
            ms = (ms & ~SPIE) | (SPIE if ms & SIE else 0)
            ms = (ms & ~(SIE | SPP)) | (SPP if self.priv == S else 0)
            c.mstatus = ms
            base, vectored = c.stvec & ~3, c.stvec & 1
            self.priv = S
            target = "S"
        else:
            c.mepc = pc & ~1
            c.mcause = cause
            c.mtval = tval
            ms = c.mstatus
            ms = (ms & ~MPIE) | (MPIE if ms & MIE else 0)
            ms = (ms & ~(MIE | MPP)) | (self.priv << MPP_SHIFT)
            c.mstatus = ms
            base, vectored = c.mtvec & ~3, c.mtvec & 1
            self.priv = M
            target = "M"
        self.vcpu.pc = base + 4 * code if (interrupt and vectored) else base
        self.sync_mode()
        return target

    def pending_interrupt(self) -> int | None:
        """The cause of the interrupt the guest must take now, by the spec's rules, or None."""
        c = self.csr
        pending = c.mip & c.mie
        if not pending:
            return None
        priv = self.priv
        ms = c.mstatus
        m_enabled = priv < M or bool(ms & MIE)
        s_enabled = priv < S or (priv == S and bool(ms & SIE))
        # interrupts for M-mode come before those delegated to S; then MEI, MSI, MTI, SEI, SSI, STI
        to_m = pending & ~c.mideleg if m_enabled else 0
        to_s = pending & c.mideleg if s_enabled else 0
        for deliverable in (to_m, to_s):
            if deliverable:
                for bit, code in PRIORITY:
                    if deliverable & bit:
                        return INTERRUPT | code
        return None

    def mret(self) -> None:
        c = self.csr
        ms = c.mstatus
        new_priv = (ms & MPP) >> MPP_SHIFT
        ms = (ms & ~MIE) | (MIE if ms & MPIE else 0)
        ms |= MPIE
        ms &= ~MPP                                  # MPP = U
        if new_priv != M:
            ms &= ~MPRV
        c.mstatus = ms
        self.priv = new_priv
        self.vcpu.pc = c.mepc
        self.sync_mode()

    def sret(self) -> None:
        c = self.csr
        ms = c.mstatus
        new_priv = S if ms & SPP else 0
        ms = (ms & ~SIE) | (SIE if ms & SPIE else 0)
        ms |= SPIE
        ms &= ~(SPP | MPRV)
        c.mstatus = ms
        self.priv = new_priv
        self.vcpu.pc = c.sepc
        self.sync_mode()
