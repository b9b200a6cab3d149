"""`--trace`: one line per exit: pc, the instruction, the reason, what the handler did."""
from __future__ import annotations

import sys

from .disasm import disassemble_at
from .hypervisor.hart import PRIV_NAMES, cause_name
from .hypervisor.stats import REASON_NAMES


class Tracer:
    def __init__(self, out=None):
        self.out = out or sys.stderr

    def exit(self, hv, reason: int, handler) -> None:
        vcpu = hv.vcpu
        vm = hv.vm
        pc, priv = vcpu.exit_pc, hv.hart.priv
        before = vcpu.x
        traps = sum(hv.stats.exceptions.values()) + sum(hv.stats.interrupts.values())
        insn = disassemble_at(vm, pc, priv, vcpu) if reason != 1 else ""
        detail = ""
        if reason == 3:
            detail = f"{cause_name(vcpu.exit_cause)}, tval {vcpu.exit_tval:#x}"
        elif reason == 4:
            rw = "write" if vcpu.exit_is_write else "read"
            hit = hv.bus.find(vcpu.exit_addr)
            where = f"{hit[0].name}+{hit[1]:#x}" if hit else "nothing mapped"
            detail = f"{rw} {vcpu.exit_size}B at {vcpu.exit_addr:#x} ({where})"
            if vcpu.exit_is_write:
                detail += f" = {vcpu.exit_value:#x}"
        try:
            handler()
        finally:
            after = vcpu.x
            effects = [f"{_reg(i)}={after[i]:#x}" for i in range(1, 32) if after[i] != before[i]]
            if hv.stats.exceptions.total() + hv.stats.interrupts.total() != traps:
                c = hv.hart.csr
                cause = c.mcause if hv.hart.priv == 3 else c.scause
                effects.append(f"trap to {PRIV_NAMES[hv.hart.priv]}: {cause_name(cause)}")
            if hv.hart.priv != priv:
                effects.append(f"priv {PRIV_NAMES[priv]}->{PRIV_NAMES[hv.hart.priv]}")
            effects.append(f"pc->{vcpu.pc:#x}")
            where = f"pc={pc:#018x} {PRIV_NAMES.get(priv, '?')}"
            text = f"{where}  {insn:<32} {REASON_NAMES[reason]:<22}"
            if detail:
                text += f" [{detail}]"
            print(f"{text} -> {' '.join(effects)}", file=self.out)


_ABI = ("zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 "
        "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()


def _reg(i: int) -> str:
    return _ABI[i]
