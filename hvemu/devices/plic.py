"""The PLIC (RISC-V Platform-Level Interrupt Controller specification 1.0.0).

Priorities per source, pending bits, per-context enables and thresholds, and
claim/complete.  Context 2h is hart h's M-mode, 2h+1 its S-mode, as on QEMU's
virt board.

The gateway behaves as QEMU's sifive_plic does, which guests written for the virt
board rely on (xv6 among them): each time a device drives its line high it makes
a new request (the source becomes pending, even while claimed, and is claimable
again after completion); a line merely held high is not forwarded again on
completion; driving it low withdraws a request not yet claimed.
"""
from __future__ import annotations

PRIORITY, PENDING, ENABLE, CONTEXT = 0x0, 0x1000, 0x2000, 0x200000


class Plic:
    name = "plic"
    size = 0x600000

    def __init__(self, sources: int = 96, contexts: int = 2, on_change=None):
        self.sources = sources
        self.contexts = contexts
        self.on_change = on_change or (lambda: None)
        self.reset()

    def reset(self) -> None:
        n = self.sources
        self.priority = [0] * n
        self.level = [False] * n
        self.pending = [False] * n
        self.in_service = [False] * n
        self.enable = [0] * self.contexts           # bitmask of sources per context
        self.threshold = [0] * self.contexts
        self.ctx_pending = [False] * self.contexts  # each context's interrupt output

    def _changed(self) -> None:
        self.ctx_pending = [self._best(c) != 0 for c in range(self.contexts)]
        self.on_change()

    def set_level(self, source: int, level: bool) -> None:
        """A device drives its interrupt line (high: a request, as described above)."""
        if self.level[source] == level == self.pending[source]:
            return
        self.level[source] = level
        self.pending[source] = level
        self._changed()

    def _best(self, ctx: int) -> int:
        """The highest-priority pending enabled source above the threshold (0 if none)."""
        best, best_prio = 0, self.threshold[ctx]
        enabled = self.enable[ctx]
        for src in range(1, self.sources):
            if (self.pending[src] and not self.in_service[src] and (enabled >> src) & 1
                    and self.priority[src] > best_prio):
                best, best_prio = src, self.priority[src]
        return best

    def context_pending(self, ctx: int) -> bool:
        return ctx < self.contexts and self.ctx_pending[ctx]

    def read(self, offset: int, size: int) -> int:
        if offset < PENDING:
            src = offset // 4
            return self.priority[src] if src < self.sources else 0
        if offset < ENABLE:
            word = (offset - PENDING) // 4
            return sum(1 << i for i in range(32)
                       if 32 * word + i < self.sources and self.pending[32 * word + i])
        if offset < CONTEXT:
            ctx, word = divmod(offset - ENABLE, 0x80)
            if ctx >= self.contexts:
                return 0
            return (self.enable[ctx] >> (8 * word)) & 0xFFFFFFFF if word % 4 == 0 else 0
        ctx, reg = divmod(offset - CONTEXT, 0x1000)
        if ctx >= self.contexts:
            return 0
        if reg == 0:
            return self.threshold[ctx]
        if reg == 4:                                # claim
            src = self._best(ctx)
            if src:
                self.pending[src] = False
                self.in_service[src] = True
                self._changed()
            return src
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset < PENDING:
            src = offset // 4
            if 0 < src < self.sources:
                self.priority[src] = value & 7
        elif offset < ENABLE:
            pass                                    # pending bits are read-only
        elif offset < CONTEXT:
            ctx, byte = divmod(offset - ENABLE, 0x80)
            if ctx < self.contexts and byte % 4 == 0:
                shift = 8 * byte
                mask = 0xFFFFFFFF << shift
                allowed = (1 << self.sources) - 2   # source 0 does not exist
                self.enable[ctx] = ((self.enable[ctx] & ~mask) | (value << shift)) & allowed
        else:
            ctx, reg = divmod(offset - CONTEXT, 0x1000)
            if ctx >= self.contexts:
                return
            if reg == 0:
                self.threshold[ctx] = value & 7
            elif reg == 4 and 0 < value < self.sources and self.in_service[value]:
                self.in_service[value] = False     # complete
        self._changed()
