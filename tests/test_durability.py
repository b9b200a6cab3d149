"""Disk writes the guest flushed survive a crash of the emulator — checked end to end
from hvemu's system calls, since the page cache survives a `kill -9` (the kill test in
test_disk_guests.py passes even without the fsync).

The bundled `disk-journal` guest writes 16 rounds of sectors and acknowledges each
range on the UART only after the FLUSH covering it completed.  hvemu runs it under
strace; tests/crashkit.py replays the trace against a disk with a volatile cache and
simulates a power loss after every traced call: every acknowledged sector must be
durable (fsync'd before its acknowledgement was written to stdout) and safe from any
cached write.  The same check run on an hvemu whose fsync does nothing must fail.
Needs strace (skipped without it, failed when CI is set).
"""
from __future__ import annotations

import struct

import pytest
from conftest import require_tool
from crashkit import Event, check_durability, parse_trace, trace_hvemu

from hvemu.disks import create_disk

DISK_BYTES = 128 * 1024
ROUNDS, STRIDE, RECORD = 16, 16, 8


def journal_sector(s: int) -> bytes:
    """What disk-journal writes to sector s (firmware/disk/journal.c)."""
    return b"JRNL" + struct.pack("<I", s) + bytes((s * 7 + k * 13 + 0x5a) & 0xFF
                                                  for k in range(8, 512))


def acked_by_the_guest() -> set[int]:
    """Every sector disk-journal acknowledges: each round's record and commit, and the
    scratch sector of every round but the last (flushed by the next round)."""
    sectors = {r * STRIDE + k for r in range(ROUNDS) for k in range(RECORD + 1)}
    return sectors | {r * STRIDE + RECORD + 1 for r in range(ROUNDS - 1)}


@pytest.fixture
def traced_journal(tmp_path):
    """traced_journal(prelude="") -> (process, verdict, disk bytes after the run)."""
    require_tool("strace")

    def run(prelude: str = ""):
        disk = tmp_path / "journal.img"
        if disk.exists():
            disk.unlink()
        create_disk(str(disk), DISK_BYTES)
        trace = tmp_path / "trace.txt"
        proc = trace_hvemu(["boot", "disk-journal", "--disk", disk], trace,
                           python_prelude=prelude)
        events = parse_trace(trace.read_text())
        verdict = check_durability(events, str(disk), bytes(DISK_BYTES), journal_sector)
        return proc, verdict, disk.read_bytes()
    return run


def test_every_acknowledged_sector_is_fsynced_before_its_ack_reaches_the_uart(traced_journal):
    proc, verdict, disk = traced_journal()
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1] == "journal: done"
    assert verdict.problems == []
    # not vacuous: the trace saw the guest's writes, flushes and acknowledgements
    assert set(verdict.acked) == acked_by_the_guest()
    assert verdict.writes == 3 * ROUNDS and verdict.fsyncs >= ROUNDS
    assert verdict.points > 3 * ROUNDS
    # and the model agrees with the real file once everything has reached it
    assert verdict.final == disk
    assert all(disk[s * 512:(s + 1) * 512] == journal_sector(s) for s in verdict.acked)


def test_the_check_fails_an_emulator_whose_flush_does_not_fsync(traced_journal):
    """The negative control: the same run with os.fsync a no-op.  The guest still gets
    its acknowledgements and the file even ends up right (the page cache has it), but
    a power loss would lose every acknowledged sector, and the check says so."""
    proc, verdict, disk = traced_journal("import os\nos.fsync = lambda fd: None")
    assert proc.returncode == 0, proc.stderr.decode()
    assert verdict.fsyncs == 0
    assert len(verdict.problems) == len(acked_by_the_guest())
    assert verdict.problems[0].endswith("loses sector 0: acked at line "
                                        f"{verdict.acked[0]}, but no fsync covered its "
                                        "write before the ack")
    assert verdict.final == disk                       # what kill -9 alone cannot see


# ---- the checker on hand-made traces ----

DISK = "/d.img"
ZERO = bytes(512)


def ev(line: int, name: str, *args: str, ret: int = 0) -> Event:
    return Event(line, name, list(args), ret)


def hexs(data: bytes) -> str:
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"'


def disk_fd() -> str:
    return "3<" + "".join(f"\\x{b:02x}" for b in DISK.encode()) + ">"


def ack(line: int, first: int, last: int) -> Event:
    text = f"journal: acked {first}-{last}\n".encode()
    return ev(line, "write", "1<pipe:[7]>", hexs(text), str(len(text)), ret=len(text))


def sector_data(s: int) -> bytes:
    return bytes([s + 1]) * 512


def check(events):
    return check_durability(events, DISK, bytes(4 * 512), sector_data)


def test_checker_write_fsync_ack_is_durable():
    v = check([ev(1, "pwrite64", disk_fd(), hexs(sector_data(1)), "512", "512", ret=512),
               ev(2, "fsync", disk_fd()), ack(3, 1, 1)])
    assert v.problems == [] and v.acked == {1: 3} and v.points == 3


def test_checker_an_ack_before_the_fsync_is_a_lost_sector():
    v = check([ev(1, "pwrite64", disk_fd(), hexs(sector_data(1)), "512", "512", ret=512),
               ack(2, 1, 1), ev(3, "fsync", disk_fd())])
    assert v.problems == ["a power loss after trace line 2 loses sector 1: acked at line 2, "
                          "but no fsync covered its write before the ack"]


def test_checker_a_cached_write_over_an_acked_sector_may_corrupt_it():
    v = check([ev(1, "pwrite64", disk_fd(), hexs(sector_data(1)), "512", "512", ret=512),
               ev(2, "fdatasync", disk_fd()), ack(3, 1, 1),
               ev(4, "pwrite64", disk_fd(), hexs(ZERO), "512", "256", ret=512)])
    assert v.problems == ["a power loss after trace line 4 may leave sector 1 (acked at "
                          "line 3) overwritten by the write at line 4"]


def test_checker_refuses_calls_it_does_not_model():
    v = check([ev(1, "pwritev", disk_fd(), "[...]", "1", "0", ret=512)])
    assert v.problems == ["line 1: pwritev on the disk, which the model does not cover"]


def test_checker_joins_calls_interrupted_by_another_thread():
    text = ("10 pwrite64(3<\\x2f\\x64\\x2e\\x69\\x6d\\x67>, \"\\x01\\x02\", 2, 0 "
            "<unfinished ...>\n"
            "11 write(1<pipe:[7]>, \"\\x78\", 1) = 1\n"
            "10 <... pwrite64 resumed>) = 2\n")
    events = parse_trace(text)
    assert [(e.name, e.ret) for e in events] == [("write", 1), ("pwrite64", 2)]
    assert events[1].args[0] == disk_fd() and events[1].args[3] == "0"
