"""Disassembly of guest instructions (capstone), for traces and fault reports."""
from __future__ import annotations

import capstone

_md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)


def disassemble(raw: bytes, pc: int = 0) -> str:
    """`<hex>  <mnemonic> <operands>` for the first instruction in raw."""
    length = 2 if raw and (raw[0] & 3) != 3 else 4
    raw = raw[:length]
    word = int.from_bytes(raw, "little")
    hexword = f"{word:0{2 * length}x}"
    for ins in _md.disasm(raw, pc):
        return f"{hexword}  {ins.mnemonic} {ins.op_str}".rstrip()
    return f"{hexword}  (not a valid RV64IMAC instruction)"


def disassemble_at(vm, pc: int, priv: int | None = None, vcpu=None) -> str:
    """Disassemble the guest instruction at virtual address pc, as the guest would fetch it
    (through vcpu's translation; default: hart 0's)."""
    from ._core import FETCH
    vcpu = vm.vcpu if vcpu is None else vcpu
    pa, _cause = vcpu.translate(pc, FETCH, vm.hart.priv if priv is None else priv)
    if pa is None:
        return "(unreadable: address does not translate)"
    try:
        raw = vm.memory.read(pa, 2)
        if raw[0] & 3 == 3:
            raw = vm.memory.read(pa, 4)
    except IndexError:
        return "(unreadable: not guest memory)"
    return disassemble(raw, pc)
