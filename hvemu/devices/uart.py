"""A 16550A UART (the `ns16550a` of QEMU's virt board).

Registers as in the TI/National PC16550D datasheet: RBR/THR, IER, IIR/FCR, LCR,
MCR, LSR, MSR, SCR, and the divisor latch (DLL/DLM) behind LCR.DLAB.  Output goes
to a sink immediately (the transmitter is always empty); input comes from
`push_input()`.  Interrupts: rx data available and THR empty (after a transmit, or
when enabled with the THR empty; cleared by reading IIR or writing THR), as enabled
in IER.  Like QEMU's serial model, the line is re-driven only when the state can
change (RBR/IIR reads, THR/IER/FCR writes, input), not on LSR or MSR polls.

`rx` is the host side's queue as well as the chip's: input typed ahead of the guest
(a pipe into `hvemu boot`) waits there, as it waits in QEMU's character device until
the UART can take it.  So a receiver FIFO reset (FCR bit 1, which kernels write while
they set the UART up) drops only what the chip itself held -- its 16-byte FIFO when
the FIFO was on, RBR's one byte when it was off -- as QEMU's serial model does, not
everything typed ahead.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40
IER_RDA, IER_THRE = 0x01, 0x02
IIR_NONE, IIR_THRE, IIR_RDA = 0x01, 0x02, 0x04
LCR_DLAB = 0x80
RX_FIFO = 16                  # receive FIFO bytes; without the FIFO, RBR holds one


class Uart16550:
    name = "uart16550"

    def __init__(self, output: Callable[[bytes], None], irq: Callable[[bool], None]):
        self.output = output
        self.irq = irq
        self.rx: deque[int] = deque()
        self.reset()

    def reset(self) -> None:
        self.ier = self.lcr = self.mcr = self.scr = self.fcr = 0
        self.dll, self.dlm = 0x0C, 0
        self.thre_pending = False
        self.rx.clear()
        self._update()

    def push_input(self, data: bytes) -> None:
        """Bytes typed on the host console: they become guest receive data."""
        self.rx.extend(data)
        self._update()

    def _iir(self) -> int:
        if self.ier & IER_RDA and self.rx:
            return IIR_RDA
        if self.ier & IER_THRE and self.thre_pending:
            return IIR_THRE
        return IIR_NONE

    def _update(self) -> None:
        self.irq(self._iir() != IIR_NONE)

    def read(self, offset: int, size: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            if dlab:
                return self.dll
            v = self.rx.popleft() if self.rx else 0
            self._update()
            return v
        if offset == 1:
            return self.dlm if dlab else self.ier
        if offset == 2:
            iir = self._iir()
            if iir == IIR_THRE:                 # reading IIR clears the THRE interrupt
                self.thre_pending = False
            self._update()
            return iir | (0xC0 if self.fcr & 1 else 0)
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        if offset == 6:
            return 0xB0                         # CTS, DSR, DCD asserted
        if offset == 7:
            return self.scr
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == 0:
            if dlab:
                self.dll = value
            else:
                self.output(bytes((value,)))
                self.thre_pending = True        # transmitted at once: THR empty again
        elif offset == 1:
            if dlab:
                self.dlm = value
            else:
                if value & IER_THRE and not self.ier & IER_THRE:
                    self.thre_pending = True
                self.ier = value & 0x0F
        elif offset == 2:
            holds = RX_FIFO if self.fcr & 1 else 1     # what the chip held until now
            self.fcr = value
            if value & 2:                   # receiver FIFO reset: what the chip holds goes
                for _ in range(min(holds, len(self.rx))):
                    self.rx.popleft()
        elif offset == 3:
            self.lcr = value
            return
        elif offset == 4:
            self.mcr = value
            return
        elif offset == 7:
            self.scr = value
            return
        self._update()
