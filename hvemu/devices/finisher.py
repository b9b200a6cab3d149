"""The SiFive test finisher ("sifive,test0") at 0x10_0000: power off, fail, reset.

A 32-bit write of 0x5555 powers off (exit code 0), (code << 16) | 0x3333 fails
with that exit code, 0x7777 resets.  Other values are ignored, reads return 0.
"""
from __future__ import annotations

FINISHER_PASS, FINISHER_FAIL, FINISHER_RESET = 0x5555, 0x3333, 0x7777


class TestFinisher:
    name = "sifive-test"
    __test__ = False          # not a pytest class

    def __init__(self, power):
        self.power = power        # has poweroff(code) and reset()

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0:
            return
        status, code = value & 0xFFFF, (value >> 16) & 0xFFFF
        if status == FINISHER_PASS:
            self.power.poweroff(0)
        elif status == FINISHER_FAIL:
            self.power.poweroff(code or 1)
        elif status == FINISHER_RESET:
            self.power.reset()
