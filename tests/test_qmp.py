"""QMP on hvemu, driven by the `qemu.qmp` package from PyPI (QEMU's own Python client),
and the human monitor over QMP and on the console (Ctrl-A c)."""
from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXIT_USAGE, FIRMWARE, require_module

EX_UNAVAILABLE = 69
REQUIRED = {"qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
            "cont", "system_reset", "system_powerdown", "quit", "query-cpus-fast",
            "human-monitor-command", "x-hvemu-stats"}


def qmp_module():
    return require_module("qemu.qmp", "qemu.qmp")


def start_hvemu(*args, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("HVEMU_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", *map(str, args)],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def wait_for_path(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"hvemu ended early: {proc.stderr.read().decode()}")
        if time.monotonic() > end:
            raise AssertionError("the QMP socket never appeared")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"hvemu did not end: {err.decode()}") from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def closing(client) -> None:
    """Disconnect after the VM ended: hvemu has closed the socket, so the client's reader
    may already have seen the end of the stream."""
    try:
        await client.disconnect()
    except EOFError:
        pass


async def next_event(client, name: str, timeout: float = 10.0):
    while True:
        event = await asyncio.wait_for(client.events.get(), timeout)
        if event["event"] == name:
            return event


@pytest.fixture
def qmp_vm(tmp_path, request):
    """hvemu running `spin` (never exits by itself) with a QMP socket; yields (proc, path).
    Parametrized indirectly, the hypervisor class (default native)."""
    sock = tmp_path / "qmp.sock"
    proc = start_hvemu("spin", "-smp", "2", "--qmp", f"unix:{sock},server,wait=off",
                       "--hypervisor", getattr(request, "param", "native"))
    try:
        wait_for_path(sock, proc)
        yield proc, sock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("qmp_vm", ["native", "hosted", "dual"], indirect=True)
def test_a_qmp_session_with_qemus_own_client(qmp_vm):
    """Under every class: a hosted or dual VM's QMP is served by its hypervisor's process."""
    qmp = qmp_module()
    proc, sock = qmp_vm

    async def session():
        client = qmp.QMPClient("test")
        await client.connect(str(sock))
        version = client.greeting.QMP.version
        assert version["package"].startswith("hvemu ")
        names = {c["name"] for c in await client.execute("query-commands")}
        assert REQUIRED <= names
        assert (await client.execute("query-status"))["status"] == "running"
        cpus = await client.execute("query-cpus-fast")
        assert [c["cpu-index"] for c in cpus] == [0, 1]
        assert all(c["target"] == "riscv64" for c in cpus)

        await client.execute("stop")
        await next_event(client, "STOP")
        status = await client.execute("query-status")
        assert status == {"running": False, "singlestep": False, "status": "paused"}
        first = await client.execute("x-hvemu-stats")
        await asyncio.sleep(0.3)
        second = await client.execute("x-hvemu-stats")
        assert second["instructions"] == first["instructions"] > 0     # stopped means stopped
        assert {"exits", "mips", "shadow", "vcpus"} <= set(first)
        assert "tlb_hits" in first["shadow"]

        # the human monitor: info registers shows hart 0's pc, x reads guest memory
        regs = await client.execute("human-monitor-command",
                                    {"command-line": "info registers"})
        pc_line = next(line for line in regs.splitlines() if line.split()[:1] == ["pc"])
        assert int(pc_line.split()[1], 16) == first["vcpus"][0]["pc"]
        dump = await client.execute("human-monitor-command",
                                    {"command-line": "x/4xw 0x80000000"})
        words = [int(w, 16) for w in dump.split(":", 1)[1].split()]
        image = spin_image_start(4 * 4)
        assert words == [int.from_bytes(image[i:i + 4], "little") for i in range(0, 16, 4)]
        other = await client.execute("human-monitor-command",
                                     {"command-line": "info registers", "cpu-index": 1})
        assert " mhartid  0000000000000001" in other

        await client.execute("cont")
        await next_event(client, "RESUME")
        await asyncio.sleep(0.3)
        third = await client.execute("x-hvemu-stats")
        assert third["instructions"] > second["instructions"]

        await client.execute("system_reset")
        event = await next_event(client, "RESET")
        assert event["data"] == {"guest": False, "reason": "host-qmp-system-reset"}

        with pytest.raises(qmp.ExecuteError) as err:
            await client.execute("no-such-command")
        assert err.value.error.error.class_ == "CommandNotFound"
        with pytest.raises(qmp.ExecuteError) as err:
            await client.execute("stop", {"bogus": 1})
        assert err.value.error.error.class_ == "GenericError"
        assert "bogus" in err.value.error.error.desc

        await client.execute("quit")
        event = await next_event(client, "SHUTDOWN")
        assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}
        await closing(client)

    asyncio.run(session())
    code, out, err = finish(proc)
    assert code == 0, err
    assert "spin: spinning" in out


def spin_image_start(n: int) -> bytes:
    """The first n bytes spin.elf loads at 0x8000_0000, from the file itself."""
    from elftools.elf.elffile import ELFFile
    with open(FIRMWARE / "spin.elf", "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_paddr"] == 0x80000000:
                return seg.data()[:n]
    raise AssertionError("spin.elf has no segment at 0x80000000")


def raw_exchange(sock_path: Path, lines: list[bytes]) -> list[dict]:
    """Send raw bytes over a fresh connection, one reply per line; returns the greeting
    and the replies."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    f = s.makefile("rb")
    replies = [json.loads(f.readline())]
    for line in lines:
        s.sendall(line)
        replies.append(json.loads(f.readline()))
    s.close()
    return replies


def test_malformed_input_gets_qmp_errors_and_the_connection_stays_usable(qmp_vm):
    proc, sock = qmp_vm
    replies = raw_exchange(sock, [
        b'{"execute": "query-status"}\n',                      # before negotiation
        b'{"execute": "qmp_capabilities"}\n',
        b'{"execute": ]}\n',                                   # not JSON
        b'[1, 2]\n',                                           # not an object
        b'{"arguments": {}}\n',                                # no execute
        b'{"execute": "query-status", "arguments": 5}\n',      # arguments not an object
        b'{"execute": "frobnicate", "id": 7}\n',               # unknown
        b'{"execute": "query-status", "id": "x"}\n',           # still works
    ])
    greeting, before, ok, bad_json, not_obj, no_exec, bad_args, unknown, status = replies
    assert "QMP" in greeting
    assert before["error"]["class"] == "CommandNotFound"
    assert ok == {"return": {}}
    assert bad_json["error"]["class"] == "GenericError"
    assert "JSON parse error" in bad_json["error"]["desc"]
    assert not_obj["error"]["class"] == "GenericError"
    assert "execute" in no_exec["error"]["desc"]
    assert "arguments" in bad_args["error"]["desc"]
    assert unknown == {"id": 7, "error": {"class": "CommandNotFound",
                                          "desc": "The command frobnicate has not been found"}}
    assert status["id"] == "x" and status["return"]["status"] == "running"


def test_values_split_across_reads_huge_or_deep_input(qmp_vm):
    proc, sock = qmp_vm
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock))
    f = s.makefile("rb")
    assert "QMP" in json.loads(f.readline())
    for part in (b'{"execute": "qmp_capa', b'bilities", "arguments": {}}'):   # split in a
        s.sendall(part)                                                     # string
        time.sleep(0.2)
    assert json.loads(f.readline()) == {"return": {}}
    s.sendall(b"[" * 100000 + b"]" * 100000 + b"\n")          # too deep for a parser
    assert json.loads(f.readline())["error"]["class"] == "GenericError"
    s.sendall(b'{"execute": "' + b"x" * (2 << 20))               # never ends, 2 MiB
    assert "exceeds" in json.loads(f.readline())["error"]["desc"]
    s.sendall(b'"}\n{"execute": "query-status", "id": 1}\n')
    replies = []                                  # the rest of the huge value: errors
    while not replies or "id" not in replies[-1]:
        replies.append(json.loads(f.readline()))
        assert len(replies) < 20
    assert all("error" in r for r in replies[:-1])
    assert replies[-1]["id"] == 1 and replies[-1]["return"]["status"] == "running"
    s.close()
    assert proc.poll() is None


def test_clients_in_turn_over_tcp_and_a_guest_poweroff_event():
    qmp = qmp_module()
    with socket.socket() as probe:                  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start_hvemu("hello", "-S", "-qmp", f"tcp:127.0.0.1:{port},server,wait=off")

    async def connect():
        client = qmp.QMPClient("test")
        end = time.monotonic() + 30
        while True:
            try:
                await client.connect(("127.0.0.1", port))
                return client
            except Exception:
                if time.monotonic() > end or proc.poll() is not None:
                    raise
                await asyncio.sleep(0.1)

    async def session():
        first = await connect()
        status = await first.execute("query-status")
        assert status["status"] == "prelaunch"              # -S: not started yet
        stats = await first.execute("x-hvemu-stats")
        assert stats["instructions"] == 0
        await first.disconnect()
        second = await connect()                              # the next client in turn
        await second.execute("cont")
        event = await next_event(second, "SHUTDOWN")
        assert event["data"] == {"guest": True, "reason": "guest-shutdown"}
        await closing(second)

    try:
        asyncio.run(session())
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert "hello" in out.lower()


def test_system_powerdown_announces_powerdown_then_shuts_down(qmp_vm):
    qmp = qmp_module()
    proc, sock = qmp_vm

    async def session():
        client = qmp.QMPClient("test")
        await client.connect(str(sock))
        await client.execute("system_powerdown")
        await next_event(client, "POWERDOWN")
        event = await next_event(client, "SHUTDOWN")
        assert event["data"]["guest"] is False
        await closing(client)

    asyncio.run(session())
    code, _, err = finish(proc)
    assert code == 0, err


def one_line_error(proc: subprocess.Popen, code: int, *words: str) -> None:
    rc, _, err = finish(proc)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("hvemu: "), err
    for w in words:
        assert w in lines[0], err


def test_a_socket_already_in_use_is_one_line(qmp_vm, tmp_path):
    proc, sock = qmp_vm
    second = start_hvemu("spin", "--qmp", f"unix:{sock},server,wait=off")
    one_line_error(second, EX_UNAVAILABLE, str(sock), "in use")
    assert proc.poll() is None                      # the first one is unharmed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        third = start_hvemu("spin", "--qmp", f"tcp:127.0.0.1:{port},server,wait=off")
        one_line_error(third, EX_UNAVAILABLE, str(port), "in use")
    plain = tmp_path / "plain-file"
    plain.write_text("not a socket")
    fourth = start_hvemu("spin", "--qmp", f"unix:{plain},server,wait=off")
    one_line_error(fourth, EX_UNAVAILABLE, "not a socket")
    assert plain.read_text() == "not a socket"
    for spec in ("unix:", "tcp:127.0.0.1:99999,server", "pipe:x,server", f"unix:{plain}"):
        bad = start_hvemu("spin", "--qmp", spec)
        one_line_error(bad, EXIT_USAGE, "--qmp")


def test_ctrl_a_c_opens_the_human_monitor_on_the_console():
    """On a terminal (a pty here), Ctrl-A c switches to the monitor and back."""
    pid, fd = pty.fork()
    if pid == 0:                                    # the child: hvemu on the pty
        os.environ.pop("HVEMU_DEBUG", None)
        os.execv(sys.executable, [sys.executable, "-m", "hvemu.cli", "boot", "spin"])
    seen = bytearray()

    def read_until(marker: bytes, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while marker not in seen:
            left = end - time.monotonic()
            assert left > 0, f"never saw {marker!r}: {bytes(seen[-500:])!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    seen.extend(os.read(fd, 4096))
                except OSError:
                    break
    try:
        read_until(b"spin: spinning")
        os.write(fd, b"\x01c")
        read_until(b"(hvemu) ")
        os.write(fd, b"info registers\r")
        read_until(b"x31/t6")
        assert b" mstatus " in seen
        start = len(seen)
        os.write(fd, b"x/2xg 0x80000000\r")
        read_until(b"0000000080000000: 0x")
        line = bytes(seen[start:]).split(b"0000000080000000: ", 1)[1].split(b"\r")[0]
        image = spin_image_start(16)
        assert line.split() == [b"0x%016x" % int.from_bytes(image[i:i + 8], "little")
                                for i in (0, 8)]
        os.write(fd, b"info status\r")
        read_until(b"VM status: running")
        os.write(fd, b"\x01c")                      # back to the console
        read_until(b"[hvemu: console]")
        os.write(fd, b"\x01x")                      # quit
        read_until(b"shut down")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_guest_reboot_is_a_guest_reset_event(tmp_path):
    qmp = qmp_module()
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    sock = tmp_path / "q.sock"
    proc = start_hvemu("disk-reboot", "--disk", disk, "-S",
                       "--qmp", f"unix:{sock},server,wait=off")
    try:
        wait_for_path(sock, proc)

        async def session():
            client = qmp.QMPClient("test")
            await client.connect(str(sock))
            await client.execute("cont")
            event = await next_event(client, "RESET", timeout=60)
            assert event["data"] == {"guest": True, "reason": "guest-reset"}
            event = await next_event(client, "SHUTDOWN", timeout=60)
            assert event["data"] == {"guest": True, "reason": "guest-shutdown"}
            await closing(client)
        asyncio.run(session())
        code, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err


def test_gdb_and_record_need_the_native_class():
    """A hosted hypervisor runs in a process of its own: the gdb stub (breakpoints live in
    the core process's decoded code) and recording are refused, not attached to a copy of
    the VM that does not run.  (QMP is served from the hypervisor's process.)"""
    from conftest import run_hvemu
    for args in (["--gdb", "tcp::1"], ["-s"], ["--record", "/tmp/never.rec"]):
        proc = run_hvemu("boot", "hello", "--hypervisor", "hosted", *args)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert len(lines) == 1 and "--hypervisor native" in lines[0], proc.stderr
    assert not Path("/tmp/never.rec").exists()
