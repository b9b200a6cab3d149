"""The Goldfish RTC ("google,goldfish-rtc") of QEMU's virt board, at 0x10_1000, IRQ 11.

Registers as in QEMU's hw/rtc/goldfish_rtc.c (and Linux's rtc-goldfish driver): the
time in nanoseconds since the Unix epoch, read as TIME_LOW (which latches the high
half) then TIME_HIGH, and set by writing TIME_HIGH then TIME_LOW; one alarm, which
raises the interrupt when the time reaches it.  Time advances with the VM's clock
(virtual time by default, so a reproducible run stays reproducible), from the host's
wall-clock time when the VM was made.
"""
from __future__ import annotations

import time

TIME_LOW, TIME_HIGH, ALARM_LOW, ALARM_HIGH = 0x00, 0x04, 0x08, 0x0C
IRQ_ENABLED, CLEAR_ALARM, ALARM_STATUS, CLEAR_INTERRUPT = 0x10, 0x14, 0x18, 0x1C
NS_PER_TICK = 100                  # the 10 MHz timebase
MASK64 = (1 << 64) - 1


class GoldfishRtc:
    name = "goldfish-rtc"

    def __init__(self, clock, irq, epoch_ns: int | None = None, on_change=None):
        self.clock = clock
        self.irq = irq
        self.on_change = on_change or (lambda: None)   # the alarm moved
        self.epoch_ns = time.time_ns() if epoch_ns is None else epoch_ns
        self.reset()

    def reset(self) -> None:
        self.offset_ns = self.epoch_ns - self.clock.now() * NS_PER_TICK
        self.high_latch = self.set_high = 0
        self.alarm = 0
        self.alarm_armed = False
        self.irq_enabled = False
        self.irq_pending = False
        self._update()

    def now_ns(self) -> int:
        return (self.offset_ns + self.clock.now() * NS_PER_TICK) & MASK64

    def next_deadline(self) -> int | None:
        """The mtime at which the alarm fires, if one is armed (for the hypervisor's timers)."""
        if not self.alarm_armed:
            return None
        return max(0, (self.alarm - self.offset_ns + NS_PER_TICK - 1) // NS_PER_TICK)

    def poll(self) -> None:
        """Fire the alarm if its time has come."""
        if self.alarm_armed and self.now_ns() >= self.alarm:
            self.alarm_armed = False
            self.irq_pending = True
            self._update()

    def _update(self) -> None:
        self.irq(self.irq_pending and self.irq_enabled)

    def read(self, offset: int, size: int) -> int:
        self.poll()
        if offset == TIME_LOW:
            now = self.now_ns()
            self.high_latch = now >> 32
            return now & 0xFFFFFFFF
        if offset == TIME_HIGH:
            return self.high_latch
        if offset == ALARM_LOW:
            return self.alarm & 0xFFFFFFFF
        if offset == ALARM_HIGH:
            return self.alarm >> 32
        if offset == IRQ_ENABLED:
            return int(self.irq_enabled)
        if offset == ALARM_STATUS:
            return int(self.alarm_armed)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset == TIME_HIGH:
            self.set_high = value
        elif offset == TIME_LOW:
            wanted = (self.set_high << 32) | value
            self.offset_ns = wanted - self.clock.now() * NS_PER_TICK
        elif offset == ALARM_HIGH:
            self.alarm = (value << 32) | (self.alarm & 0xFFFFFFFF)
        elif offset == ALARM_LOW:                   # the low half arms the alarm
            self.alarm = (self.alarm & ~0xFFFFFFFF) | value
            self.alarm_armed = True
            self.poll()
            self.on_change()
        elif offset == IRQ_ENABLED:
            self.irq_enabled = bool(value & 1)
        elif offset == CLEAR_ALARM:
            self.alarm_armed = False
            self.on_change()
        elif offset == CLEAR_INTERRUPT:
            self.irq_pending = False
        self._update()
