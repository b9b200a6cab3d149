"""Crash-consistency checking from a system-call trace, in the spirit of ALICE
(Pillai et al., "All File Systems Are Not Created Equal", OSDI 2014).

`trace_hvemu()` runs `hvemu` under strace, recording the file-system calls that
matter for durability (writes, fsync/fdatasync/sync, and the writes to stdout that
carry the guest's console).  `check_durability()` replays that trace against a model
of a disk with a volatile cache:

* a `pwrite64` to the disk file lands in the cache; an `fsync`/`fdatasync` of it (or
  `sync`/`syncfs`) makes every write before it durable;
* a power loss may keep any subset of the cached writes, in any order, one 512-byte
  sector at a time, and loses the rest;
* the guest acknowledges sectors on its console ("journal: acked A-B", written to
  fd 1) only after the FLUSH covering them completed.

After every event of the trace — each a point where the power could go — every sector
acknowledged so far must be intact in *every* state a power loss could leave: durable
with the guest's data, and not overwritten with other data by any cached write.  So an
acknowledgement that reached the UART before the fsync covering its writes fails the
check, as does a write to the wrong place.  Any other call that could modify the disk
file (writev, mmap, fallocate, ...) fails it too: the model does not cover it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

SECTOR = 512
TRACED = ("pwrite64,pwritev,pwritev2,write,writev,fsync,fdatasync,sync,syncfs,"
          "sync_file_range,ftruncate,fallocate,mmap,copy_file_range,close")
MODIFYING = {"pwritev", "pwritev2", "writev", "ftruncate", "fallocate", "copy_file_range",
             "sync_file_range"}
ACK = re.compile(rb"journal: acked (\d+)-(\d+)\r?\n")
LINE = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+|\?)")


@dataclass
class Event:
    line: int                      # line number in the trace (1-based)
    name: str                      # system call
    args: list[str]
    ret: int


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    fsyncs: int = 0                # durability barriers on the disk
    writes: int = 0                # pwrite64 calls on the disk
    acked: dict[int, int] = field(default_factory=dict)   # sector -> trace line of its ack
    points: int = 0                # power-loss points checked
    final: bytes = b""             # the disk once every write has reached it


def trace_hvemu(args: list[str], trace_file, *, python_prelude: str = "", timeout: float = 120,
                cwd=None) -> subprocess.CompletedProcess:
    """Run `hvemu ARGS` (python_prelude first, in the same interpreter) under strace,
    writing the trace to trace_file."""
    strace = shutil.which("strace")
    assert strace, "strace is needed"
    script = (f"{python_prelude}\nimport sys\nfrom hvemu.cli import main\n"
              f"main({[str(a) for a in args]!r})\n")
    cmd = [strace, "-f", "-qq", "--seccomp-bpf", "-y", "-xx", "-s", "1048576",
           "-e", f"trace={TRACED}", "-e", "signal=none", "-o", str(trace_file),
           sys.executable, "-c", script]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                          cwd=cwd)


def parse_trace(text: str) -> list[Event]:
    """The completed system calls of an `strace -f -y -xx` trace, in order
    (an `<unfinished ...>` call is joined with its `<... resumed>` rest)."""
    events, unfinished = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw
        m = re.match(r"^(\d+) +(.*) <unfinished \.\.\.>$", line)
        if m:
            unfinished[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(\d+) +<\.\.\. \w+ resumed>(.*)$", line)
        if m:
            line = f"{m.group(1)} {unfinished.pop(m.group(1), '')}{m.group(2)}"
        m = LINE.match(line)
        if not m:
            continue
        ret = int(m.group(4)) if m.group(4) != "?" else -1
        events.append(Event(number, m.group(2), _split_args(m.group(3)), ret))
    return events


def _split_args(text: str) -> list[str]:
    """Top-level arguments (strings are all-hex with -xx, so they hold no commas)."""
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(<":
            depth += 1
        elif ch in "]})>":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def _bytes(arg: str) -> bytes:
    m = re.match(r'^"((?:\\x[0-9a-f]{2})*)"', arg)
    assert m, f"not an strace -xx string: {arg[:60]}"
    return bytes.fromhex(m.group(1).replace("\\x", ""))


def _fd_path(arg: str) -> tuple[int, str]:
    """fd and path of an `strace -y -xx` descriptor argument: 3<\x2f\x74...>."""
    m = re.match(r"^(\d+)<(.*)>$", arg)
    if not m:
        return -1, ""
    text = m.group(2)
    if re.fullmatch(r"(?:\\x[0-9a-f]{2})*", text):
        text = bytes.fromhex(text.replace("\\x", "")).decode("utf-8", "replace")
    return int(m.group(1)), text


def check_durability(events: list[Event], disk: str, initial: bytes, expected) -> Verdict:
    """Replay events against the volatile-cache model (module docstring); expected(s)
    is the 512 bytes the guest wrote to sector s."""
    v = Verdict()
    durable = bytearray(initial)
    cache: list[tuple[int, int, bytes]] = []      # (trace line, offset, data)
    console = b""
    reported: set[int] = set()

    def apply(into: bytearray, offset: int, data: bytes) -> None:
        if offset + len(data) > len(into):
            into.extend(bytes(offset + len(data) - len(into)))
        into[offset:offset + len(data)] = data

    for ev in events:
        fd, path = _fd_path(ev.args[0]) if ev.args else (-1, "")
        on_disk = path == disk
        if ev.name == "pwrite64" and on_disk and ev.ret >= 0:
            cache.append((ev.line, int(ev.args[3]), _bytes(ev.args[1])[:ev.ret]))
            v.writes += 1
        elif ev.name in ("fsync", "fdatasync") and on_disk and ev.ret == 0:
            for _, offset, data in cache:
                apply(durable, offset, data)
            cache.clear()
            v.fsyncs += 1
        elif ev.name in ("sync", "syncfs") and ev.ret == 0:
            for _, offset, data in cache:
                apply(durable, offset, data)
            cache.clear()
        elif ev.name == "write" and fd == 1 and ev.ret > 0:
            console += _bytes(ev.args[1])[:ev.ret]
            for m in ACK.finditer(console):
                for s in range(int(m.group(1)), int(m.group(2)) + 1):
                    v.acked.setdefault(s, ev.line)
            console = console[console.rfind(b"\n") + 1:]
        elif on_disk and (ev.name in MODIFYING or (ev.name == "write" and ev.ret > 0)):
            v.problems.append(f"line {ev.line}: {ev.name} on the disk, which the model "
                              "does not cover")
        elif ev.name == "mmap" and len(ev.args) > 4 and _fd_path(ev.args[4])[1] == disk:
            v.problems.append(f"line {ev.line}: the disk is mmap'd; the model does not "
                              "cover writes through a mapping")
        # the power goes now: every acknowledged sector must survive
        v.points += 1
        for s, acked_at in v.acked.items():
            if s in reported:
                continue
            want = expected(s)
            have = bytes(durable[s * SECTOR:(s + 1) * SECTOR])
            if have != want:
                reported.add(s)
                v.problems.append(
                    f"a power loss after trace line {ev.line} loses sector {s}: acked at "
                    f"line {acked_at}, but no fsync covered its write before the ack")
                continue
            for line, offset, data in cache:
                lo, hi = max(offset, s * SECTOR), min(offset + len(data), (s + 1) * SECTOR)
                if lo < hi and data[lo - offset:hi - offset] != want[lo - s * SECTOR:
                                                                    hi - s * SECTOR]:
                    reported.add(s)
                    v.problems.append(
                        f"a power loss after trace line {ev.line} may leave sector {s} "
                        f"(acked at line {acked_at}) overwritten by the write at line {line}")
                    break
    final = bytearray(durable)
    for _, offset, data in cache:
        apply(final, offset, data)
    v.final = bytes(final)
    return v
