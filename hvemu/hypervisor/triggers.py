"""The debug triggers of a virtual hart (riscv-debug-spec, "Sdtrig"): tselect, tdata1-3, tinfo.

Each of the hart's TRIGGER_COUNT triggers is an address-match trigger of type mcontrol6
(6) or the older mcontrol (2), or disabled (15).  It matches the virtual address of an
instruction executed, or of a load or store, and raises a breakpoint exception before
the instruction runs (timing "before").  The registers are WARL; a configuration
this hart cannot honour reads back as a disabled trigger, so that a debugger reading
back what it wrote sees the trigger is not set:

* action: only 0 (raise a breakpoint exception).  There is no Debug Mode and no trace.
* select: only 0 (compare addresses); data and opcode matches are not implemented.
* match: equal, napot (mcontrol6 only: mcontrol's maskmax is 0), greater or equal,
  less than, mask low/high, and their negations.
* size: any, or an access/instruction size (a size this hart never performs --
  48-bit instructions, 128-bit accesses -- is legal and never matches).
* timing (mcontrol): hard-wired to 0, "before".  dmode, maskmax, vs/vu, uncertain(en):
  0.  chain: writable, except on the last trigger.  hit (mcontrol), hit0/hit1
  (mcontrol6, set to 1 = "before"): set when the trigger fires, writable.
* tdata3 (textra) reads 0: no context or value conditions.  tinfo: version 1,
  types 2, 6 and 15.  tcontrol is not implemented (reads and writes are illegal).

Re-entrancy (Sdtrig, "Native Triggers") is solved by the first of the spec's two
options: a trigger does not match in M-mode while mstatus.MIE is 0, nor in S-mode
while SIE is 0 if breakpoints are delegated (medeleg[3]).  The second option
(tcontrol.mte/mpte) would require medeleg[3] hard-wired to 0, and then no kernel
could handle its own ebreak.

Cache-block operations match as stores of the whole block, for mcontrol6 triggers of
size "any" only (as the CMO spec recommends); prefetch hints never match.

The hypervisor pushes what the core needs into it with `VCpu.set_triggers`
(`core_view`), whenever the triggers, the privilege, mstatus.MIE/SIE or medeleg change.
"""
from __future__ import annotations

from collections.abc import Callable

from .._core import TRIGGER_ARMED, TRIGGER_CBO, TRIGGER_CHAIN, TRIGGER_COUNT

TSELECT, TDATA1, TDATA2, TDATA3, TINFO = 0x7A0, 0x7A1, 0x7A2, 0x7A3, 0x7A4
CSR_NAMES = {TSELECT: "tselect", TDATA1: "tdata1", TDATA2: "tdata2", TDATA3: "tdata3",
             TINFO: "tinfo"}

TYPE_SHIFT = 60
MCONTROL, MCONTROL6, DISABLED = 2, 6, 15
DISABLED_TDATA1 = DISABLED << TYPE_SHIFT
TINFO_VALUE = (1 << 24) | (1 << MCONTROL) | (1 << MCONTROL6) | (1 << DISABLED)   # version 1

# fields both types share
LOAD, STORE, EXECUTE, U_BIT, S_BIT, M_BIT = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 6
MATCH_SHIFT, CHAIN, ACTION_SHIFT = 7, 1 << 11, 12
MATCH_FIELD = 0xF << MATCH_SHIFT
COMMON = LOAD | STORE | EXECUTE | U_BIT | S_BIT | M_BIT | MATCH_FIELD | CHAIN
# mcontrol (type 2)
MC_SIZELO_SHIFT, MC_TIMING, MC_SELECT, MC_HIT, MC_SIZEHI_SHIFT = 16, 1 << 18, 1 << 19, 1 << 20, 21
# mcontrol6 (type 6)
M6_SIZE_SHIFT, M6_SELECT, M6_HIT0, M6_HIT1 = 16, 1 << 21, 1 << 22, 1 << 25

MATCHES = {MCONTROL: {0, 2, 3, 4, 5, 8, 12, 13},             # no napot (maskmax 0)
           MCONTROL6: {0, 1, 2, 3, 4, 5, 8, 9, 12, 13}}
SIZE_BYTES = {MCONTROL: {0: 0, 1: 1, 2: 2, 3: 4, 4: 6, 5: 8, 6: 10, 7: 12, 8: 14, 9: 16},
              MCONTROL6: {0: 0, 1: 1, 2: 2, 3: 4, 4: 6, 5: 8, 6: 16}}
NAPOT_MAX = 63                   # mcontrol6's maskmax6: NAPOT ranges up to 2^63 bytes

M, S, U = 3, 1, 0
MIE, SIE = 1 << 3, 1 << 1
BREAKPOINT = 3
MASK64 = (1 << 64) - 1


def trigger_type(tdata1: int) -> int:
    return tdata1 >> TYPE_SHIFT


def size_code(tdata1: int) -> int:
    """The access-size field of a type 2 or type 6 tdata1."""
    if trigger_type(tdata1) == MCONTROL:
        return (((tdata1 >> MC_SIZEHI_SHIFT) & 3) << 2) | ((tdata1 >> MC_SIZELO_SHIFT) & 3)
    return (tdata1 >> M6_SIZE_SHIFT) & 7


class TriggerModule:
    """The trigger CSRs of one hart; `core_view()` is what the core matches with."""

    count = TRIGGER_COUNT

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.select = 0
        self.tdata1 = [DISABLED_TDATA1] * self.count
        self.tdata2 = [0] * self.count
        self.configured = False       # some trigger is not disabled (it may be armed)

    # ---- the CSRs ----
    def install(self, read: dict[int, Callable[[], int]],
                write: dict[int, Callable[[int], None]]) -> None:
        read[TSELECT] = lambda: self.select
        write[TSELECT] = self._write_select
        read[TDATA1] = lambda: self.tdata1[self.select]
        write[TDATA1] = lambda v: self._write_tdata1(self.select, v)
        read[TDATA2] = lambda: self.tdata2[self.select]
        write[TDATA2] = lambda v: self._write_tdata2(self.select, v)
        read[TDATA3] = lambda: 0
        write[TDATA3] = lambda v: None
        read[TINFO] = lambda: TINFO_VALUE
        write[TINFO] = lambda v: None

    def _write_select(self, v: int) -> None:
        if v < self.count:                        # WARL: other values are not kept
            self.select = v

    def legal_tdata1(self, index: int, v: int) -> int:
        """What tdata1 of trigger index holds after a write of v (from M-mode)."""
        kind = trigger_type(v)
        if kind not in MATCHES:
            return DISABLED_TDATA1                # 0, 15 and the types not implemented
        action = (v >> ACTION_SHIFT) & 0xF
        match = (v >> MATCH_SHIFT) & 0xF
        select = v & (MC_SELECT if kind == MCONTROL else M6_SELECT)
        if action or select or match not in MATCHES[kind] or \
                size_code(v) not in SIZE_BYTES[kind]:
            return DISABLED_TDATA1
        if kind == MCONTROL:
            keep = COMMON | MC_HIT | (3 << MC_SIZELO_SHIFT) | (3 << MC_SIZEHI_SHIFT)
        else:
            keep = COMMON | M6_HIT0 | M6_HIT1 | (7 << M6_SIZE_SHIFT)
        if index == self.count - 1:
            keep &= ~CHAIN                        # no next trigger to chain with
        return (kind << TYPE_SHIFT) | (v & keep)

    def _write_tdata1(self, index: int, v: int) -> None:
        self.tdata1[index] = self.legal_tdata1(index, v)
        self.configured = any(trigger_type(t) != DISABLED for t in self.tdata1)

    def _write_tdata2(self, index: int, v: int) -> None:
        t1 = self.tdata1[index]
        low = (1 << NAPOT_MAX) - 1
        napot = ((t1 >> MATCH_SHIFT) & 7) == 1
        if trigger_type(t1) == MCONTROL6 and napot and (v & low) == low:
            v &= ~(1 << (NAPOT_MAX - 1))          # a range wider than 2^maskmax6: WARL
        self.tdata2[index] = v

    # ---- the core's view ----
    def core_view(self, priv: int, mstatus: int, medeleg: int) -> list[tuple[int, int, int, int]]:
        """(tdata2, flags, match, size in bytes) per trigger, for VCpu.set_triggers.

        TRIGGER_ARMED marks the triggers that can fire now: enabled for this privilege,
        and not in M with MIE = 0, nor in S with SIE = 0 when breakpoints go to S."""
        if priv == M:
            mode, can_fire = M_BIT, bool(mstatus & MIE)
        elif priv == S:
            to_s = bool((medeleg >> BREAKPOINT) & 1)
            mode, can_fire = S_BIT, not to_s or bool(mstatus & SIE)
        else:
            mode, can_fire = U_BIT, True
        view = []
        for t1, t2 in zip(self.tdata1, self.tdata2, strict=True):
            kind = trigger_type(t1)
            if kind not in MATCHES:
                view.append((0, 0, 0, 0))
                continue
            flags = t1 & (LOAD | STORE | EXECUTE)        # the same bits as TRIGGER_*
            if can_fire and t1 & mode:
                flags |= TRIGGER_ARMED
            if t1 & CHAIN:
                flags |= TRIGGER_CHAIN
            code = size_code(t1)
            if kind == MCONTROL6 and code == 0:
                flags |= TRIGGER_CBO
            view.append((t2, flags, (t1 >> MATCH_SHIFT) & 0xF, SIZE_BYTES[kind][code]))
        return view

    def fired(self, mask: int) -> None:
        """The core raised a breakpoint for the triggers in mask: set their hit bits."""
        for i in range(self.count):
            if mask >> i & 1:
                t1 = self.tdata1[i]
                if trigger_type(t1) == MCONTROL:
                    self.tdata1[i] = t1 | MC_HIT
                elif trigger_type(t1) == MCONTROL6:
                    self.tdata1[i] = (t1 & ~(M6_HIT0 | M6_HIT1)) | M6_HIT0   # 1: "before"

