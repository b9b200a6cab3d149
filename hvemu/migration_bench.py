"""Live migration, measured: a 128 MiB guest running a memory-writing workload
(firmware/memwrite.elf) migrated mid-run, on hvemu and, side by side, on QEMU, which
speaks the same `-incoming tcp:` and QMP `migrate`.

`measure_hvemu()` runs the source VM in this process and the target as `hvemu boot
memwrite --incoming tcp:127.0.0.1:PORT`; `measure_qemu()` runs two qemu-system-riscv64
processes, the source driven over QMP.  Both give downtime, total and setup time, bytes
sent, rounds (dirty-sync-count) and whether the workload's checksum, printed by the
target after the move, is the one the uninterrupted run prints; for QEMU also how many
RAM pages of the target differ from the (stopped) source's when the migration is over.

    python -m hvemu.migration_bench [--downtime-limit MS] [--repeat N]
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from . import images

QEMU = "qemu-system-riscv64"
CHECKSUM = re.compile(rb"memwrite: checksum=(0x[0-9a-f]+)")


@dataclass
class MigrationFigures:
    emulator: str
    downtime_ms: float
    total_ms: float
    setup_ms: float
    transferred: int
    rounds: int
    checksum: str
    checksum_ok: bool
    output_ok: bool                  # source's console + target's = the uninterrupted run's
    downtime_limit_ms: int
    rounds_detail: list = field(default_factory=list)
    pages_differ: int | None = None  # QEMU: source and target RAM compared after the move
    # hvemu's downtime lasts until the target says it has loaded everything; QEMU's ends
    # when the source has sent everything (it does not wait for the target): hvemu's
    # figure counted QEMU's way
    send_downtime_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def _wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} never listened on {port}")
        time.sleep(0.01)


_REFERENCE: dict = {}


def reference_output(image: str = "memwrite", memory: int = 128 << 20) -> bytes:
    """The uninterrupted run's console output on hvemu."""
    from .vm import VM, VMConfig
    if image not in _REFERENCE:
        vm = VM(VMConfig(image=images.resolve(image), memory=memory))
        vm.run()
        _REFERENCE[image] = vm.console.output_bytes
    return _REFERENCE[image]


def _checksum(out: bytes) -> str:
    m = CHECKSUM.search(out)
    return m.group(1).decode() if m else ""


def measure_hvemu(downtime_limit: int = 30, delay: float = 1.0,
                  image: str = "memwrite") -> MigrationFigures:
    """Migrate image's VM (128 MiB) after `delay` seconds of its run to a target process."""
    from .vm import VM, VMConfig
    full = reference_output(image)
    port = _free_port()
    env = dict(os.environ)
    env.pop("HVEMU_DEBUG", None)
    target = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", image, "-m", "128M",
                               "--incoming", f"tcp:127.0.0.1:{port}"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    try:
        _wait_listening(port, target, "the hvemu target")
        vm = VM(VMConfig(image=images.resolve(image), memory=128 << 20))
        vm.start()
        time.sleep(delay)
        info = vm.migrate(f"tcp:127.0.0.1:{port}", downtime_limit=downtime_limit).wait(300)
        out, err = target.communicate(timeout=300)
    finally:
        if target.poll() is None:
            target.kill()
            target.communicate()
    if info["status"] != "completed":
        raise RuntimeError(f"hvemu migration {info['status']}: {info.get('error-desc')}")
    if target.returncode != 0:
        raise RuntimeError(f"the hvemu target failed ({target.returncode}): {err.decode()}")
    source_out = vm.console.output_bytes
    vm.shutdown()
    vm.resume()
    vm.wait(30)
    checksum = _checksum(out)
    return MigrationFigures(
        "hvemu", info["x-downtime-exact"] * 1000, info["total-time"], info["setup-time"],
        info["ram"]["transferred"], info["ram"]["dirty-sync-count"], checksum,
        checksum == _checksum(full), source_out + out == full, downtime_limit,
        info["x-rounds"] + [info["x-downtime-parts"]],
        send_downtime_ms=1000 * (info["x-downtime-parts"]["pause"]
                                 + info["x-downtime-parts"]["send"]))


# ---------------------------------------------------------------------------
# QEMU
# ---------------------------------------------------------------------------

class Qmp:
    """A minimal QMP client (QEMU Machine Protocol: one JSON object per line)."""

    def __init__(self, port: int):
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.file = self.sock.makefile("rwb")
        json.loads(self.file.readline())                  # the greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments):
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            return reply.get("return")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def measure_qemu(downtime_limit: int = 30, delay: float = 0.3,
                 image: str = "memwrite", extra: tuple = ()) -> MigrationFigures:
    """The same migration between two qemu-system-riscv64 processes (TCG), driven over
    QMP: migrate-set-parameters (the same downtime-limit; max-bandwidth unthrottled, as
    hvemu's is), migrate, query-migrate until it completes."""
    import tempfile
    path = images.resolve(image)
    full = reference_output(image)
    port, qmp_port, target_qmp = _free_port(), _free_port(), _free_port()
    base = [QEMU, "-M", "virt", "-bios", "none", "-m", "128M", "-kernel", path,
            "-display", "none", "-serial", "stdio", "-monitor", "none", *extra]
    # the target starts paused (-S) so that its RAM can be compared with the source's
    # once the migration is over; then it is let go (cont)
    target = subprocess.Popen([*base, "-S", "-incoming", f"tcp:127.0.0.1:{port}", "-qmp",
                               f"tcp:127.0.0.1:{target_qmp},server=on,wait=off"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    source = None
    qmp = tqmp = None
    tmp = tempfile.TemporaryDirectory()
    try:
        _wait_listening(port, target, "the QEMU target")
        tqmp = Qmp(target_qmp)
        source = subprocess.Popen([*base, "-qmp", f"tcp:127.0.0.1:{qmp_port},server=on,wait=off"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        qmp = Qmp(qmp_port)
        time.sleep(delay)
        qmp.command("migrate-set-parameters", **{"downtime-limit": downtime_limit,
                                                   "max-bandwidth": 10 << 30})
        qmp.command("migrate", uri=f"tcp:127.0.0.1:{port}")
        while True:
            info = qmp.command("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.005)
        if info["status"] != "completed":
            raise RuntimeError(f"QEMU migration {info['status']}: {info.get('error-desc')}")
        while tqmp.command("query-status")["status"] != "paused":
            time.sleep(0.005)
        dumps = []
        for name, q in (("source", qmp), ("target", tqmp)):
            dump = os.path.join(tmp.name, name)
            q.command("pmemsave", val=0x8000_0000, size=128 << 20, filename=dump)
            with open(dump, "rb") as f:
                dumps.append(f.read())
        differ = sum(dumps[0][i:i + 4096] != dumps[1][i:i + 4096]
                     for i in range(0, 128 << 20, 4096))
        tqmp.command("cont")
        try:
            qmp.command("quit")                        # the answer may not make it back
        except (OSError, ValueError):
            pass
        source_out, _ = source.communicate(timeout=60)
        out, err = target.communicate(timeout=300)
    finally:
        for q in (qmp, tqmp):
            if q is not None:
                q.close()
        tmp.cleanup()
        for p in (source, target):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    checksum = _checksum(out)
    ram = info["ram"]
    return MigrationFigures(
        "qemu", float(info["downtime"]), float(info["total-time"]),
        float(info.get("setup-time", 0)),
        ram["transferred"], ram["dirty-sync-count"], checksum, checksum == _checksum(full),
        source_out + out == full, downtime_limit, pages_differ=differ)


def main(argv=None) -> None:
    import argparse

    from rich.console import Console
    from rich.table import Table
    ap = argparse.ArgumentParser(prog="python -m hvemu.migration_bench")
    ap.add_argument("--downtime-limit", type=int, default=30, help="ms (default 30)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for _ in range(args.repeat):
        rows.append(measure_hvemu(args.downtime_limit))
        if qemu_available() and not args.no_qemu:
            rows.append(measure_qemu(args.downtime_limit))
    t = Table(title="live migration of a 128 MiB guest writing memory (memwrite), "
                    f"downtime-limit {args.downtime_limit} ms; downtime: hvemu's until the "
                    "target has loaded it all, QEMU's until the source has sent it all")
    for col in ("emulator", "downtime ms", "until sent ms", "total ms", "setup ms",
                "MiB sent", "rounds", "checksum", "output", "RAM pages differing"):
        t.add_column(col, justify="right")
    for r in rows:
        sent = r.send_downtime_ms if r.send_downtime_ms is not None else r.downtime_ms
        t.add_row(r.emulator, f"{r.downtime_ms:.1f}", f"{sent:.1f}", f"{r.total_ms:.0f}",
                  f"{r.setup_ms:.0f}",
                  f"{r.transferred / (1 << 20):.1f}", str(r.rounds),
                  f"{r.checksum} {'ok' if r.checksum_ok else 'WRONG'}",
                  "same" if r.output_ok else "DIFFERS",
                  "-" if r.pages_differ is None else str(r.pages_differ))
    Console(width=150).print(t)


if __name__ == "__main__":
    main()
