"""The guest console: UART output to the host, host input to the UART, and scripting.

Output is written to the host's stdout when `echo` is set, and its tail is kept for
`expect()`: at least the last `keep` bytes (1 MiB by default), never more than twice
that, however much the guest prints.  Positions in the output are absolute — byte n
is the n-th byte the guest ever printed — so `position` taken before a command and
`expect(..., start=position)` keep working when older output has been dropped.
Input comes from `send()` (scripts, tests) and, for the CLI, from the host's stdin,
polled by the hypervisor every slice.
"""
from __future__ import annotations

import os
import re
import select
import sys
import threading
import time

from .errors import HostIOError

KEEP = 1 << 20                      # console output kept for expect(): the last 1 MiB


class ConsoleMatch:
    """A match of `Console.expect()`: like re.Match, with absolute start/end/span."""

    def __init__(self, match: re.Match, base: int):
        self.re_match = match
        self.base = base

    def start(self, group=0) -> int:
        return self.base + self.re_match.start(group)

    def end(self, group=0) -> int:
        return self.base + self.re_match.end(group)

    def span(self, group=0) -> tuple[int, int]:
        return self.start(group), self.end(group)

    def __getitem__(self, group):
        return self.re_match[group]

    def __getattr__(self, name):                # group(), groups(), groupdict(), ...
        return getattr(self.re_match, name)

    def __repr__(self) -> str:
        return f"<ConsoleMatch span={self.span()} match={self.group()!r}>"


class Console:
    def __init__(self, echo=None, stdin_fd: int | None = None, input_expected: bool = False,
                 keep: int = KEEP):
        self.echo = echo                      # a binary stream (sys.stdout.buffer) or None
        self.stdin_fd = stdin_fd              # host fd to read guest input from, or None
        self.input_expected = input_expected  # a script will send() input: idle guests wait
        self.keep = max(1, keep)
        self._tail = bytearray()              # the kept output ...
        self._base = 0                        # ... starts at this absolute position
        self._cond = threading.Condition()
        self._pending_input = bytearray()
        self.receive = None                   # set by the VM: the UART's push_input

    # ---- guest -> host ----
    def output(self, data: bytes) -> None:
        with self._cond:
            tail = self._tail
            tail += data
            if len(tail) > 2 * self.keep:        # drop the oldest, amortised
                drop = len(tail) - self.keep
                del tail[:drop]
                self._base += drop
            self._cond.notify_all()
        if self.echo is not None:
            try:
                self.echo.write(data)
                if b"\n" in data:
                    self.echo.flush()
            except OSError as e:
                self._echo_failed(e)

    def adopt_output(self, dropped: int, kept: bytes) -> None:
        """Take over the output another process's copy of this console kept (a hosted
        hypervisor's), without echoing it again."""
        with self._cond:
            self._base, self._tail = dropped, bytearray(kept)
            self._cond.notify_all()

    def flush(self) -> None:
        if self.echo is not None:
            try:
                self.echo.flush()
            except OSError as e:
                self._echo_failed(e)

    def _echo_failed(self, e: OSError) -> None:
        """The host's stdout is gone (a closed pipe, a full device): the guest's output
        has nowhere to go, so the run stops with an I/O error (exit 74)."""
        self.echo = None
        raise HostIOError(f"stdout: cannot write the guest's console output "
                          f"({e.strerror or e}); the guest was stopped") from None

    @property
    def position(self) -> int:
        """How many bytes the guest has printed so far (the absolute end of the output)."""
        return self._base + len(self._tail)

    @property
    def dropped(self) -> int:
        """How many of the oldest output bytes are no longer kept."""
        return self._base

    @property
    def output_bytes(self) -> bytes:
        """The kept output: everything from position `dropped` on."""
        with self._cond:
            return bytes(self._tail)

    def output_since(self, start: int) -> bytes:
        """The kept output from absolute position start on."""
        with self._cond:
            return bytes(self._tail[max(0, start - self._base):])

    @property
    def text(self) -> str:
        return self.output_bytes.decode("utf-8", "replace")

    # ---- host -> guest ----
    def send(self, data: bytes | str) -> None:
        """Queue input for the guest (thread-safe); delivered at the next poll."""
        if isinstance(data, str):
            data = data.encode()
        with self._cond:
            self._pending_input += data
            self._cond.notify_all()

    def can_receive(self) -> bool:
        """Whether guest input may still arrive (from the host's stdin or a script)."""
        return self.stdin_fd is not None or self.input_expected or bool(self._pending_input)

    def poll(self) -> None:
        """Move pending input into the UART (called by the hypervisor between slices)."""
        self.flush()
        if self.stdin_fd is not None:
            try:
                ready, _, _ = select.select([self.stdin_fd], [], [], 0)
                if ready:
                    data = os.read(self.stdin_fd, 4096)
                    if data:
                        self.send(data)
                    else:
                        self.stdin_fd = None          # end of input
            except (OSError, ValueError):
                self.stdin_fd = None
        if self._pending_input and self.receive is not None:
            with self._cond:
                data = bytes(self._pending_input)
                self._pending_input.clear()
            self.receive(data)

    def wait_input(self, deadline: float | None, limit: float = 0.05) -> None:
        """Sleep until input arrives (or a short while): the guest is idle."""
        self.flush()
        timeout = limit if deadline is None else max(0.0, min(limit, deadline - time.monotonic()))
        if self.stdin_fd is not None:
            try:
                select.select([self.stdin_fd], [], [], timeout)
            except (OSError, ValueError):
                self.stdin_fd = None
            return
        with self._cond:
            if not self._pending_input:
                self._cond.wait(timeout)

    # ---- scripting ----
    def expect(self, pattern: str, timeout: float = 10.0, start: int = 0) -> ConsoleMatch:
        """Wait until the output from absolute position `start` matches the regex; the
        match's start()/end() are absolute positions too.  TimeoutError if it never does
        (output dropped before `start` can be seen is not searched: see `keep`)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                pos = max(0, start - self._base)
                if rx.search(self._tail, pos):      # the match holds a copy, not the tail
                    return ConsoleMatch(rx.search(bytes(self._tail), pos), self._base)
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"console never matched {pattern!r}; "
                                       f"last output: {bytes(self._tail[-300:])!r}")
                self._cond.wait(left)


def stdout_console(interactive_input: bool = True) -> Console:
    """A console on the host terminal: output to stdout, input from stdin when it's usable."""
    fd = None
    if interactive_input:
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError, AttributeError):
            fd = None
    return Console(echo=sys.stdout.buffer, stdin_fd=fd)


CTRL_A = 0x01
HOTKEY_HELP = ("\r\nhvemu console keys: Ctrl-A x quit, Ctrl-A s statistics, "
               "Ctrl-A p pause/resume, Ctrl-A c monitor/console, Ctrl-A h help, "
               "Ctrl-A Ctrl-A a literal Ctrl-A\r\n")


class TerminalConsole(Console):
    """The host terminal as the guest's console, QEMU-style: keys go to the guest
    unbuffered, except Ctrl-A sequences, which steer the VM.  The terminal mode is
    restored on every way out (`restore()` from a finally clause and on SIGTERM)."""

    def __init__(self, fd: int = 0):
        super().__init__(echo=sys.stdout.buffer, stdin_fd=fd)
        self.fd = fd
        self.vm = None                      # set by the CLI: what the hotkeys act on
        self.on_stats = None
        self.monitor = None                 # a control.monitor.Monitor: Ctrl-A c opens it
        self._in_monitor = False
        self._line = bytearray()
        self._escape = False
        self._saved = None

    def enter(self) -> None:
        import termios
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[0] &= ~(termios.IXON | termios.ICRNL | termios.INLCR)         # iflag
        mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)  # lflag
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def restore(self) -> None:
        if self._saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        out = bytearray()
        for byte in data:
            if self._escape:
                self._escape = False
                if byte == CTRL_A:
                    out.append(CTRL_A)
                else:
                    self._hotkey(chr(byte).lower())
            elif byte == CTRL_A:
                self._escape = True
            elif self._in_monitor:
                self._monitor_key(byte)
            else:
                out.append(byte)
        if out:
            super().send(bytes(out))

    def _hotkey(self, key: str) -> None:
        vm = self.vm
        if key == "x":
            self._say("[hvemu: quit]")
            if vm is not None:
                vm.shutdown()
        elif key == "c" and self.monitor is not None:
            self._in_monitor = not self._in_monitor
            self._line.clear()
            if self._in_monitor:
                self._write("\r\nhvemu monitor (QEMU's human monitor commands; help lists "
                            "them, Ctrl-A c returns to the console)\r\n(hvemu) ")
            else:
                self._say("[hvemu: console]")
        elif key == "s":
            if self.on_stats is not None:
                self.on_stats()
        elif key == "p" and vm is not None:
            if vm.state == "paused" or vm.control.request == "pause":
                self._say("[hvemu: resumed]")
                vm.resume()
            else:
                self._say("[hvemu: paused; Ctrl-A p resumes]")
                vm.pause()
        else:
            self._say(HOTKEY_HELP.strip())

    def _monitor_key(self, byte: int) -> None:
        """A key typed in the monitor: the line is edited here and run on Enter."""
        if byte in (0x0D, 0x0A):
            line = self._line.decode("utf-8", "replace")
            self._line.clear()
            self._write("\r\n")
            if line.strip():
                try:
                    self._write(self.monitor.execute(line))
                except Exception as e:            # a monitor bug must not end the guest
                    self._write(f"internal error: {type(e).__name__}: {e}\r\n")
            self._write("(hvemu) ")
        elif byte in (0x7F, 0x08):
            if self._line:
                self._line.pop()
                self._write("\b \b")
        elif byte >= 0x20:
            self._line.append(byte)
            self._write(chr(byte))

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def _say(self, text: str) -> None:
        sys.stderr.write(f"\r\n{text}\r\n")
        sys.stderr.flush()
