"""Exit statistics, like `kvm_stat`: every exit counted by reason and class."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .hart import cause_name

REASON_NAMES = {1: "budget", 2: "privileged instruction", 3: "guest exception", 4: "mmio",
                5: "out of host memory", 6: "debugger"}


@dataclass
class ExitStats:
    exits: list[int] = field(default_factory=lambda: [0] * 7)   # by core exit reason
    privileged: Counter = field(default_factory=Counter)        # by instruction class
    exceptions: Counter = field(default_factory=Counter)        # reflected, by cause
    interrupts: Counter = field(default_factory=Counter)        # delivered, by cause
    mmio: Counter = field(default_factory=Counter)              # by device
    sbi: Counter = field(default_factory=Counter)               # built-in SBI calls
    instructions: int = 0
    seconds: float = 0.0
    core_seconds: float = 0.0                                   # inside the fast path
    shadow: dict = field(default_factory=dict)
    host_frames: int = 0                                        # bytes of host frames its RAM holds
    privileged_part: int = 0        # exits the core's privileged part finished (native, dual)

    @property
    def total_exits(self) -> int:
        return sum(self.exits[2:]) + self.exits[1]

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def handler_seconds(self) -> float:
        return max(0.0, self.seconds - self.core_seconds)

    def to_dict(self) -> dict:
        return {
            "instructions": self.instructions,
            "seconds": round(self.seconds, 6),
            "mips": round(self.mips, 3),
            "core_seconds": round(self.core_seconds, 6),
            "handler_seconds": round(self.handler_seconds, 6),
            "exits": {REASON_NAMES[i]: n for i, n in enumerate(self.exits) if i in REASON_NAMES},
            "exits_total": self.total_exits,
            "exits_finished_in_the_core": self.privileged_part,
            "exits_per_second": round(self.total_exits / self.seconds, 1) if self.seconds else 0,
            "privileged_instructions": dict(self.privileged),
            "exceptions": {cause_name(c): n for c, n in self.exceptions.items()},
            "interrupts": {cause_name(c): n for c, n in self.interrupts.items()},
            "mmio": dict(self.mmio),
            "sbi": dict(self.sbi),
            "shadow": dict(self.shadow),
            "host_frames_bytes": self.host_frames,
        }
