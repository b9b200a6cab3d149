"""The fast path's dispatch is written once (hvemu/core/fastpath.pxi.in) and expanded by
the build into several copies; every copy must have an arm for every operation the
pre-decoder can produce, since the dispatch has no range check (an op without an arm
would be undefined behaviour, not an error)."""
import re
from pathlib import Path

from Cython import Tempita

CORE = Path(__file__).resolve().parent.parent / "hvemu" / "core"


def decoder_ops() -> set[str]:
    """The Op names of the pre-decoder's enum (decode.pxi)."""
    text = (CORE / "decode.pxi").read_text()
    enum = text[text.index("cdef enum:\n    OP_UNDECODED"):]
    enum = enum[:enum.index("\n\n")]
    return set(re.findall(r"^\s+(OP_\w+)", enum, re.M))


def dispatch_copies() -> list[set[str]]:
    """The ops with an arm, per copy of the dispatch in the expanded template."""
    text = Tempita.sub((CORE / "fastpath.pxi.in").read_text())
    parts = re.split(r"# ---- dispatch, copy \d+ of \d+ ----", text)[1:]
    return [set(re.findall(r"^\s+(?:el)?if op == (OP_\w+):", p, re.M)) for p in parts]


def test_the_dispatch_is_expanded_into_two_copies():
    assert len(dispatch_copies()) == 2


def test_every_copy_of_the_dispatch_has_an_arm_for_every_decoded_op():
    ops = decoder_ops()
    assert {"OP_UNDECODED", "OP_GENERIC", "OP_ADDI", "OP_C_JALR"} <= ops
    for arms in dispatch_copies():
        assert arms == ops
