"""--strace and --stats: each handler wrapped to count it and print one line per call.

The line is QEMU's -strace shape: `PID name(arguments) = result`, an error as
`= -1 errno=N (message)`.  Arguments are printed by kind: d/i signed, u unsigned, x
hex, p a pointer (NULL for 0), fd a descriptor (AT_FDCWD), s a string read from guest
memory, o open(2) flags, m an octal mode, sig a signal, av an argv-style array, f
clone flags, of O_* flags alone (dup3, pipe2).  Results: d an int, x hex (mmap, brk), n none (exit).
"""
from __future__ import annotations

import errno
import os

from .. import abi
from ..abi import SYSCALL_NAMES

MAX_STRING = 64
MAX_ARRAY = 16


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _int(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v >> 31 else v


def _string(process, v: int) -> str:
    if v == 0:
        return "NULL"
    try:
        s = process.mm.read_cstr(v, 4096)
    except Exception:
        return f"{v:#x}"
    text = s[:MAX_STRING].decode("utf-8", "backslashreplace")
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"' + ("..." if len(s) > MAX_STRING else "")


def _argv(process, v: int) -> str:
    if v == 0:
        return "NULL"
    try:
        ptrs = process.mm.read_ptrs(v, 1 << 17)
    except Exception:
        return f"{v:#x}"
    shown = [_string(process, p) for p in ptrs[:MAX_ARRAY]]
    if len(ptrs) > MAX_ARRAY:
        shown.append(f"... {len(ptrs) - MAX_ARRAY} more")
    return "{" + ",".join(shown + ["NULL"]) + "}"


def _flags(v: int, names) -> str:
    parts = [name for bit, name in names if v & bit]
    rest = v & ~sum(bit for bit, _ in names)
    if rest or not parts:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def format_arg(process, kind: str, v: int) -> str:
    if kind in ("d", "i"):
        return str(_signed(v) if kind == "d" else _int(v))
    if kind == "u":
        return str(v)
    if kind == "x":
        return f"{v:#x}"
    if kind == "p":
        return "NULL" if v == 0 else f"{v:#x}"
    if kind == "fd":
        return "AT_FDCWD" if _int(v) == abi.AT_FDCWD else str(_int(v))
    if kind == "s":
        return _string(process, v)
    if kind == "o":
        return abi.open_flags_text(v)
    if kind == "m":
        return "0" if v == 0 else f"0{v:o}"
    if kind == "of":                          # O_* flags without an access mode
        return "0" if v == 0 else abi.open_flags_text(v).split("|", 1)[-1]
    if kind == "sig":
        return abi.signal_name(_int(v)) if 0 < _int(v) < 32 else str(_int(v))
    if kind == "av":
        return _argv(process, v)
    if kind == "f":
        return _flags(v & ~0xFF, abi.CLONE_NAMES) + (
            f"|{abi.signal_name(v & 0xFF)}" if v & 0xFF else "")
    return f"{v:#x}"


def format_result(kind: str, res) -> str:
    if not isinstance(res, int):
        return "?"
    if -4096 < res < 0:
        return f"-1 errno={-res} ({os.strerror(-res)})"
    if kind == "x":
        return f"{res & 0xFFFF_FFFF_FFFF_FFFF:#x}"
    return str(res)


def instrument(process, nr, fn):
    """fn wrapped to count each call (--stats) and print it (--strace)."""
    from ..mm import GuestFault
    from ..runtime import Interrupted, Reload
    from . import SPECS
    strace = process.opts.strace

    def wrapped(p, a0, a1, a2, a3, a4, a5):
        number = nr if nr is not None else p.vcpu.get_x(17)
        p.fig.syscalls[number] += 1
        if not strace:
            return fn(p, a0, a1, a2, a3, a4, a5)
        name = SYSCALL_NAMES.get(number, f"syscall_{number}")
        kinds, ret = SPECS.get(number, (("x",) * 6, "d")) if nr is not None else (("x",) * 6, "d")
        values = (a0, a1, a2, a3, a4, a5)
        head = f"{p.pid} {name}(" + ",".join(
            format_arg(p, k, values[i]) for i, k in enumerate(kinds)) + ")"
        if ret == "n":
            _emit(head + " = ?")
            return fn(p, a0, a1, a2, a3, a4, a5)
        try:
            res = fn(p, a0, a1, a2, a3, a4, a5)
        except OSError as e:
            _emit(f"{head} = {format_result(ret, -(e.errno or errno.EIO))}")
            raise
        except GuestFault:
            _emit(f"{head} = {format_result(ret, -errno.EFAULT)}")
            raise
        except Interrupted as e:
            _emit(f"{head} = -1 errno={errno.EINTR} "
                  f"({'interrupted, restarted' if e.restart else os.strerror(errno.EINTR)})")
            raise
        except Reload:
            _emit(f"{head} = 0")
            raise
        _emit(f"{head} = {format_result(ret, res)}")
        return res

    return wrapped


def _emit(line: str) -> None:
    try:
        os.write(2, (line + "\n").encode(errors="replace"))
    except OSError:
        pass
