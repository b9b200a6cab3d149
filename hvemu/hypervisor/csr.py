"""The virtual CSR file: the guest's machine- and supervisor-mode state.

Every CSR instruction the guest executes exits to the hypervisor, whose handler
reads and writes this file.  Field layouts and WARL behaviour follow the RISC-V
privileged spec (chapters "Machine-Level ISA" and "Supervisor-Level ISA"); an
access to a CSR that does not exist, from too low a privilege, or a write to a
read-only CSR raises `IllegalCsrAccess`, which the handler turns into an
illegal-instruction trap in the guest.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from ..board import ISA
from .triggers import CSR_NAMES as TRIGGER_CSR_NAMES
from .triggers import TriggerModule

M, S, U = 3, 1, 0

# mstatus bits (privileged spec, "Machine Status Register")
SIE, MIE, SPIE, MPIE, SPP = 1 << 1, 1 << 3, 1 << 5, 1 << 7, 1 << 8
MPP_SHIFT, MPP = 11, 3 << 11
FS, XS = 3 << 13, 3 << 15
MPRV, SUM, MXR, TVM, TW, TSR = 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, 1 << 22
UXL_64, SXL_64 = 2 << 32, 2 << 34
FS_SHIFT, FS_OFF, FS_DIRTY = 13, 0, 3
MSTATUS_WRITABLE = SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR
SSTATUS_VIEW = SIE | SPIE | SPP | FS | XS | SUM | MXR | (3 << 32) | (1 << 63)
SSTATUS_WRITABLE = SIE | SPIE | SPP | FS | SUM | MXR

# interrupt bits in mip/mie (privileged spec, "Machine Interrupt Registers")
SSIP, MSIP, STIP, MTIP, SEIP, MEIP = 1 << 1, 1 << 3, 1 << 5, 1 << 7, 1 << 9, 1 << 11
S_INTERRUPTS = SSIP | STIP | SEIP
ALL_INTERRUPTS = S_INTERRUPTS | MSIP | MTIP | MEIP
MIP_WRITABLE = SSIP | STIP | SEIP          # MSIP/MTIP/MEIP come from the CLINT and PLIC
MEDELEG_WRITABLE = 0xB3FF                  # causes 0-9, 12, 13, 15 (never 11: ecall from M)

# misa: MXL=64, the single-letter extensions of the ISA string (board.ISA, which the
# device tree advertises too), S and U (privilege modes, not in the string), and B when
# Zba, Zbb and Zbs are all there (the B extension is exactly those three)
_BASE, *_MULTI = ISA.removeprefix("rv64").split("_")
MISA = (2 << 62) | sum(1 << (ord(c) - ord("a")) for c in set(_BASE) | {"s", "u"} | (
    {"b"} if {"zba", "zbb", "zbs"} <= set(_MULTI) else set()))

# menvcfg/senvcfg: FIOM, and Zicbom/Zicboz's CBIE (2 bits; 0b10 reserved), CBCFE, CBZE
ENVCFG_FIOM, ENVCFG_CBIE, ENVCFG_CBCFE, ENVCFG_CBZE = 1, 3 << 4, 1 << 6, 1 << 7
ENVCFG_CBIE_FLUSH, ENVCFG_CBIE_INVAL = 1 << 4, 3 << 4
MENVCFG_STCE = 1 << 63
SENVCFG_WRITABLE = ENVCFG_FIOM | ENVCFG_CBIE | ENVCFG_CBCFE | ENVCFG_CBZE
MENVCFG_WRITABLE = MENVCFG_STCE | SENVCFG_WRITABLE          # and STCE (Sstc)
SATP_MODES = {0: 0, 8: 8, 9: 9}            # bare, Sv39, Sv48
SATP_ASID_MASK = 0xFFFF
PMP_ENTRIES = 16

# CSR numbers
CSR_NAMES = {
    0x001: "fflags", 0x002: "frm", 0x003: "fcsr",
    0x100: "sstatus", 0x104: "sie", 0x105: "stvec", 0x106: "scounteren",
    0x10A: "senvcfg", 0x140: "sscratch", 0x141: "sepc", 0x142: "scause", 0x143: "stval",
    0x144: "sip", 0x14D: "stimecmp", 0x180: "satp",
    0x300: "mstatus", 0x301: "misa", 0x302: "medeleg", 0x303: "mideleg", 0x304: "mie",
    0x305: "mtvec", 0x306: "mcounteren", 0x30A: "menvcfg", 0x320: "mcountinhibit",
    0x340: "mscratch", 0x341: "mepc", 0x342: "mcause", 0x343: "mtval", 0x344: "mip",
    0xB00: "mcycle", 0xB02: "minstret", 0xC00: "cycle", 0xC01: "time", 0xC02: "instret",
    0xF11: "mvendorid", 0xF12: "marchid", 0xF13: "mimpid", 0xF14: "mhartid",
    0xF15: "mconfigptr",
} | TRIGGER_CSR_NAMES


class IllegalCsrAccess(Exception):
    """The access must raise an illegal-instruction exception in the guest."""


@dataclass
class FpState:
    """Where mstatus.FS, fcsr and the plain CSRs live when the CSR file stands alone; a
    hart passes its VCpu instead, since the core holds them (it sets FS Dirty as it
    executes; a dual-mode hypervisor's privileged part reads and writes the plain CSRs)."""
    fs: int = 0
    fflags: int = 0
    frm: int = 0
    vcsr: list = field(default_factory=lambda: [0] * 11)

    def vcsr_get(self, i: int) -> int:
        return self.vcsr[i]

    def vcsr_set(self, i: int, v: int) -> None:
        self.vcsr[i] = v


# the plain CSRs, stored in the core's HartState.vcsr (core/privpart.pxi): attribute -> index
PLAIN_CSRS = ("mscratch", "mepc", "mcause", "mtval", "sscratch", "sepc", "scause", "stval")
MSTATUS_SLOT = 8                   # ... and, while a run lasts, mstatus (less FS)
# ... and two more the privileged part writes, with their side effects on the core's
# translation state (stvec: the S trap vector; satp: the shadow TLB): attribute -> index
CORE_CSRS = {"stvec": 9, "satp": 10}


def _plain_csr(i: int) -> property:
    return property(lambda self: self.fpu.vcsr_get(i),
                    lambda self, v: self.fpu.vcsr_set(i, v))


class VirtualCsrFile:
    """Machine- and supervisor-level CSRs of one virtual hart.

    The plain CSRs (PLAIN_CSRS) are properties over the core's HartState, shared with
    the hypervisor's privileged part in the core (core/privpart.pxi); mstatus is this
    file's own, pushed into HartState.vcsr[MSTATUS_SLOT] for each run with the part on
    and taken back after (VCpu.run_part, as a VMM writes and reads a VMCS field).

    `instret` and `time` are callables giving the retired-instruction count and
    the virtual mtime; counters are derived from them (cycle = instret).  `fpu` holds
    mstatus.FS, fflags and frm (the hart's VCpu): the `mstatus` attribute keeps every
    other field, and reads of mstatus/sstatus merge FS in.
    """

    def __init__(self, hartid: int, instret: Callable[[], int], time: Callable[[], int],
                 fpu=None):
        self.hartid = hartid
        self._instret = instret
        self._time = time
        self.triggers = TriggerModule()         # Sdtrig: tselect, tdata1-3, tinfo
        self.fpu = FpState() if fpu is None else fpu    # mstatus.FS, fflags, frm
        self.reset()
        self._read: dict[int, Callable[[], int]] = {}
        self._write: dict[int, Callable[[int], None]] = {}
        self._build_tables()

    def reset(self) -> None:
        self.mstatus = UXL_64 | SXL_64
        self.fpu.fs = FS_OFF
        self.fpu.fflags = self.fpu.frm = 0
        self.medeleg = self.mideleg = 0
        self.mie = 0
        self.mip_sw = 0            # the software-writable part of mip (SSIP, STIP, SEIP)
        self.mip_hw = 0            # MSIP/MTIP/MEIP/SEIP/STIP, sampled from the devices
        self.mtvec = self.mepc = self.mcause = self.mtval = self.mscratch = 0
        self.mcounteren = self.mcountinhibit = self.menvcfg = 0
        self.stvec = self.sepc = self.scause = self.stval = self.sscratch = 0
        self.scounteren = self.senvcfg = 0
        self.satp = 0
        self.stimecmp = (1 << 64) - 1
        self.cycle_offset = self.instret_offset = 0
        self.pmpcfg = [0] * (PMP_ENTRIES // 8)
        self.pmpaddr = [0] * PMP_ENTRIES
        self.triggers.reset()

    # ---- derived views ----
    @property
    def mip(self) -> int:
        return self.mip_sw | self.mip_hw

    @property
    def sstatus(self) -> int:
        return self._mstatus_read() & SSTATUS_VIEW

    def counter_allowed(self, bit: int, priv: int) -> bool:
        """mcounteren/scounteren gate cycle (0), time (1), instret (2) below M."""
        if priv == M:
            return True
        if not (self.mcounteren >> bit) & 1:
            return False
        return priv == S or bool((self.scounteren >> bit) & 1)

    # ---- access ----
    def read(self, csr: int, priv: int) -> int:
        """Value of csr read at privilege priv (IllegalCsrAccess if not allowed)."""
        if (csr >> 8) & 3 > priv:
            raise IllegalCsrAccess
        fn = self._read.get(csr)
        if fn is None:
            raise IllegalCsrAccess
        if csr >= 0xC00 and csr < 0xC20 and not self.counter_allowed(csr & 31, priv):
            raise IllegalCsrAccess
        if csr == 0x14D and priv != M and not (self.menvcfg & MENVCFG_STCE and
                                               self.counter_allowed(1, priv)):
            raise IllegalCsrAccess
        if csr == 0x180 and priv == S and self.mstatus & TVM:
            raise IllegalCsrAccess
        if csr <= 3 and self.fpu.fs == FS_OFF:    # fflags, frm, fcsr
            raise IllegalCsrAccess
        return fn()

    def write(self, csr: int, value: int, priv: int) -> None:
        """Write csr at privilege priv, applying its WARL rules."""
        if (csr >> 8) & 3 > priv or (csr >> 10) == 3:
            raise IllegalCsrAccess
        fn = self._write.get(csr)
        if fn is None:
            raise IllegalCsrAccess
        if csr == 0x14D and priv != M and not (self.menvcfg & MENVCFG_STCE and
                                               self.counter_allowed(1, priv)):
            raise IllegalCsrAccess
        if csr == 0x180 and priv == S and self.mstatus & TVM:
            raise IllegalCsrAccess
        if csr <= 3 and self.fpu.fs == FS_OFF:
            raise IllegalCsrAccess
        fn(value & 0xFFFFFFFFFFFFFFFF)

    # ---- the tables ----
    def _build_tables(self) -> None:
        r, w = self._read, self._write

        def plain(num: int, name: str, mask: int = (1 << 64) - 1) -> None:
            if name in PLAIN_CSRS:              # straight to the core's HartState.vcsr
                i, get, put = PLAIN_CSRS.index(name), self.fpu.vcsr_get, self.fpu.vcsr_set
                r[num] = partial(get, i)
                w[num] = lambda v: put(i, v & mask)
                return
            r[num] = partial(getattr, self, name)
            w[num] = lambda v: setattr(self, name, v & mask)

        def const(num: int, value: int | Callable[[], int]) -> None:
            r[num] = value if callable(value) else (lambda: value)
            w[num] = lambda v: None

        # floating-point (F and D): fcsr = frm << 5 | fflags; bits 8 and up read zero
        fpu = self.fpu
        r[0x001] = lambda: fpu.fflags
        w[0x001] = lambda v: self._fcsr_write(v & 0x1F, fpu.frm)
        r[0x002] = lambda: fpu.frm
        w[0x002] = lambda v: self._fcsr_write(fpu.fflags, v & 7)
        r[0x003] = lambda: (fpu.frm << 5) | fpu.fflags
        w[0x003] = lambda v: self._fcsr_write(v & 0x1F, (v >> 5) & 7)
        # machine information (read-only)
        const(0xF11, 0)           # mvendorid: non-commercial
        const(0xF12, 0)           # marchid
        const(0xF13, 0)           # mimpid
        const(0xF14, lambda: self.hartid)
        const(0xF15, 0)           # mconfigptr
        # machine trap setup and handling
        r[0x300] = lambda: self._mstatus_read()
        w[0x300] = self._mstatus_write
        const(0x301, MISA)        # misa: writes ignored (WARL)
        plain(0x302, "medeleg", MEDELEG_WRITABLE)
        plain(0x303, "mideleg", S_INTERRUPTS)
        plain(0x304, "mie", ALL_INTERRUPTS)
        r[0x305] = lambda: self.mtvec
        w[0x305] = lambda v: setattr(self, "mtvec", self._tvec(v, self.mtvec))
        plain(0x306, "mcounteren", 0xFFFFFFFF)
        r[0x30A] = lambda: self.menvcfg
        w[0x30A] = lambda v: setattr(self, "menvcfg",
                                     self._envcfg(v & MENVCFG_WRITABLE, self.menvcfg))
        plain(0x320, "mcountinhibit", 0xFFFFFFFD)
        plain(0x340, "mscratch")
        plain(0x341, "mepc", ~1)
        plain(0x342, "mcause")
        plain(0x343, "mtval")
        r[0x344] = lambda: self.mip
        w[0x344] = lambda v: setattr(self, "mip_sw", v & MIP_WRITABLE & ~(
            STIP if self.menvcfg & MENVCFG_STCE else 0))   # Sstc: STIP follows stimecmp
        # machine counters: cycle counts instructions (CPI 1)
        r[0xB00] = lambda: (self._instret() + self.cycle_offset) & 0xFFFFFFFFFFFFFFFF
        w[0xB00] = lambda v: setattr(self, "cycle_offset", v - self._instret())
        r[0xB02] = lambda: (self._instret() + self.instret_offset) & 0xFFFFFFFFFFFFFFFF
        w[0xB02] = lambda v: setattr(self, "instret_offset", v - self._instret())
        for n in range(3, 32):
            const(0xB00 + n, 0)                   # mhpmcounterN
            const(0x320 + n, 0)                   # mhpmeventN
            const(0xC00 + n, 0)                   # hpmcounterN
        # unprivileged counters, gated by mcounteren/scounteren
        r[0xC00] = r[0xB00]
        r[0xC01] = self._time
        r[0xC02] = r[0xB02]
        # physical memory protection: stored (WARL), not enforced
        for i in range(8):            # RV64: the even pmpcfg0..14; entries past 16 read zero
            if i < PMP_ENTRIES // 8:
                r[0x3A0 + 2 * i] = (lambda i=i: self.pmpcfg[i])
                w[0x3A0 + 2 * i] = (lambda v, i=i: self._pmpcfg_write(i, v))
            else:
                const(0x3A0 + 2 * i, 0)
        for i in range(64):
            if i < PMP_ENTRIES:
                r[0x3B0 + i] = (lambda i=i: self.pmpaddr[i])
                w[0x3B0 + i] = (lambda v, i=i: self._pmpaddr_write(i, v))
            else:
                const(0x3B0 + i, 0)
        # supervisor
        r[0x100] = lambda: self._mstatus_read() & SSTATUS_VIEW
        w[0x100] = lambda v: self._mstatus_write(
            (self.mstatus & ~SSTATUS_WRITABLE) | (v & SSTATUS_WRITABLE))
        r[0x104] = lambda: self.mie & self.mideleg
        w[0x104] = lambda v: setattr(
            self, "mie", (self.mie & ~self.mideleg) | (v & self.mideleg & S_INTERRUPTS))
        r[0x105] = lambda: self.stvec
        w[0x105] = lambda v: setattr(self, "stvec", self._tvec(v, self.stvec))
        plain(0x106, "scounteren", 0xFFFFFFFF)
        r[0x10A] = lambda: self.senvcfg
        w[0x10A] = lambda v: setattr(self, "senvcfg",
                                     self._envcfg(v & SENVCFG_WRITABLE, self.senvcfg))
        plain(0x140, "sscratch")
        plain(0x141, "sepc", ~1)
        plain(0x142, "scause")
        plain(0x143, "stval")
        r[0x144] = lambda: self.mip & self.mideleg
        w[0x144] = lambda v: setattr(
            self, "mip_sw", (self.mip_sw & ~(self.mideleg & SSIP)) | (v & self.mideleg & SSIP))
        plain(0x14D, "stimecmp")
        r[0x180] = lambda: self.satp
        w[0x180] = self._satp_write
        # Sdtrig (M-mode CSRs 0x7A0-0x7A4; tcontrol, mcontext and scontext are absent)
        self.triggers.install(r, w)

    def _mstatus_read(self) -> int:
        fs = self.fpu.fs
        v = (self.mstatus & ~FS) | (fs << FS_SHIFT)
        if fs == FS_DIRTY or (v & XS) == XS:      # SD: some state is dirty
            v |= 1 << 63
        return v

    def _mstatus_write(self, v: int) -> None:
        new = (self.mstatus & ~MSTATUS_WRITABLE) | (v & MSTATUS_WRITABLE)
        if (new & MPP) == (2 << MPP_SHIFT):        # MPP=2 is reserved: keep the old value
            new = (new & ~MPP) | (self.mstatus & MPP)
        self.fpu.fs = (new & FS) >> FS_SHIFT      # FS lives in the core
        self.mstatus = new & ~FS

    def _fcsr_write(self, fflags: int, frm: int) -> None:
        """A guest write of fcsr, fflags or frm: FP state changes, so FS becomes Dirty."""
        fpu = self.fpu
        fpu.fflags = fflags
        fpu.frm = frm
        fpu.fs = FS_DIRTY

    @staticmethod
    def _envcfg(v: int, old: int) -> int:
        """CBIE's reserved value 0b10 is not kept: the field keeps its old value."""
        if (v & ENVCFG_CBIE) == 2 << 4:
            v = (v & ~ENVCFG_CBIE) | (old & ENVCFG_CBIE)
        return v

    @staticmethod
    def _tvec(v: int, old: int) -> int:
        mode = v & 3
        if mode >= 2:                              # reserved modes: keep the old mode
            mode = old & 3
        return (v & ~3) | mode

    def _satp_write(self, v: int) -> None:
        mode = v >> 60
        if mode not in SATP_MODES:                 # unsupported mode: the write has no effect
            return
        self.satp = (mode << 60) | (v & (SATP_ASID_MASK << 44)) | (v & ((1 << 44) - 1))

    def _pmpcfg_write(self, i: int, v: int) -> None:
        old = self.pmpcfg[i]
        new = 0
        for b in range(8):
            byte = (old >> (8 * b)) & 0xFF
            if not byte & 0x80:                    # locked entries keep their value
                byte = (v >> (8 * b)) & 0x9F       # R W X A L; reserved bits zero
                if byte & 3 == 2:                  # R=0 W=1 is reserved
                    byte &= ~2
            new |= byte << (8 * b)
        self.pmpcfg[i] = new

    def _pmpaddr_write(self, i: int, v: int) -> None:
        if not (self.pmpcfg[i // 8] >> (8 * (i % 8))) & 0x80:
            self.pmpaddr[i] = v & ((1 << 54) - 1)

    @property
    def readers(self) -> dict[int, Callable[[], int]]:
        """CSR number -> its value reader, without the access checks of `read()`."""
        return self._read

    # ---- helpers for the hypervisor ----
    def name(self, csr: int) -> str:
        return CSR_NAMES.get(csr, f"csr{csr:#05x}")

    def snapshot(self) -> dict[str, int]:
        """The named CSRs a guest can read at M, for dumps and tests."""
        out = {}
        for num, name in CSR_NAMES.items():
            try:
                out[name] = self.read(num, M)
            except IllegalCsrAccess:
                pass
        return out


for _i, _name in enumerate(PLAIN_CSRS):
    setattr(VirtualCsrFile, _name, _plain_csr(_i))
for _name, _i in CORE_CSRS.items():
    setattr(VirtualCsrFile, _name, _plain_csr(_i))
