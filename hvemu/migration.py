"""Live migration of a running VM to another hypervisor process: pre-copy, with dirty
logging through shadow-TLB write protection (Clark et al., "Live Migration of Virtual
Machines", NSDI 2005; QEMU's precopy does the same).

The target is `hvemu boot ... --incoming tcp:HOST:PORT` (`receive()`): the same machine
as the source's (checked), waiting for the state.  The source is `vm.migrate(uri)`
(`start()`), or QMP's `migrate`; `info()` answers `query-migrate` with QEMU's field
names, `set_parameters()` is `migrate-set-parameters` (`downtime-limit` in ms,
`max-bandwidth` in bytes/s, hvemu's own `x-max-rounds`), `cancel()` `migrate_cancel`.

How it goes, over one TCP connection, in the sections of hvemu/snapshot.py:

1. setup: the source sends the header (stream flag set) and its CONF; the target
   compares it with its own machine and answers one line, `ok` or `refused: REASON`.
2. the source turns dirty logging on: the VM is stopped between two exits, the RAM's
   dirty log is cleared and switched on, and every vCPU's store-TLB entries are dropped
   (write protection: the next store to any page misses, and the miss logs the page).
3. round 0 sends every touched page while the guest runs; then the VM is stopped for a
   moment, the pages logged since are harvested (and the store TLBs dropped again),
   and the next round sends those -- also while the guest runs.  Each round measures
   the bandwidth; when the pages left would take no longer than `downtime-limit` to
   send (or after `x-max-rounds` rounds), the VM stays stopped:
4. the last dirty pages, the disks flushed (fsync: a disk on a shared host file is
   handed over as it is), the ROM and the device state (STAT) and END go; the target
   loads them and answers `done`, and runs the VM.  Downtime is the time from that
   stop to `done`.  The source stays paused, like QEMU's source after a migration.

With `blk` (QMP migrate's `"blk": true`) the disks go too, onto the target's own files
of the same sizes: every 64 KiB block in round 0, then in each round the blocks the
guest wrote since (DiskImage's dirty set, harvested with the RAM's log), in BLK sections.

Faults: whatever ends the connection early (the target killed, a refusal, a corrupt
stream the target detects, a cancel) fails the migration on the source, which turns
dirty logging off and lets the guest go on running, having lost nothing.  The target
refuses a bad stream with one line and never runs a half-loaded VM.
"""
from __future__ import annotations

import hashlib
import socket
import threading
import time
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from . import snapshot
from .devices.virtio_blk import DIRTY_BLOCK
from .errors import HvemuError, UsageError
from .snapshot import (
    PAGE,
    RAM_HEAD,
    RAM_ZLIB,
    SECTION,
    SectionReader,
    SnapshotError,
    Stopped,
    json_section,
    section,
)

DEFAULTS = {"downtime-limit": 300, "max-bandwidth": 0, "x-max-rounds": 30, "compress": False}
BATCH = 256                       # pages per RAM section (1 MiB)
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 120.0


class MigrationError(SnapshotError):
    """The migration cannot go on (one line)."""


def parse_uri(uri: str) -> tuple[str, int]:
    """tcp:HOST:PORT -> (HOST, PORT)."""
    kind, _, rest = uri.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"migration URI {uri!r}: give tcp:HOST:PORT (e.g. tcp:127.0.0.1:4444)")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------------------
# the parameters (migrate-set-parameters)
# ---------------------------------------------------------------------------

def parameters(vm) -> dict:
    p = getattr(vm, "migration_parameters", None)
    if p is None:
        p = vm.migration_parameters = dict(DEFAULTS)
    return p


def set_parameters(vm, **values) -> dict:
    """migrate-set-parameters: downtime-limit (ms), max-bandwidth (bytes/s, 0: none),
    x-max-rounds, compress (zlib on the RAM pages).  Underscores may stand for dashes."""
    p = parameters(vm)
    for key, value in values.items():
        key = key.replace("_", "-")
        if key not in DEFAULTS:
            raise UsageError(f"migration parameter {key!r}: not one of {', '.join(DEFAULTS)}")
        if key == "compress":
            p[key] = bool(value)
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or \
                (key == "x-max-rounds" and value < 1):
            raise UsageError(f"migration parameter {key}: {value!r} is not a count")
        p[key] = value
    return dict(p)


# ---------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------

def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


class Migration:
    """One outgoing migration, run by its own thread (`start()`)."""

    def __init__(self, vm, uri: str, params: dict, blk: bool = False):
        self.vm = vm
        self.uri = uri
        self.blk = blk                  # also copy the disks (QMP migrate's "blk")
        self.host, self.port = parse_uri(uri)
        self.params = dict(params)
        self.status = "setup"
        self.error: str | None = None
        self.started = time.monotonic()
        self.setup_seconds: float | None = None
        self.total_seconds: float | None = None
        self.downtime_seconds: float | None = None
        self.expected_downtime: float | None = None
        self.rounds = 0                 # dirty-sync-count: harvests of the dirty log
        self.transferred = 0            # bytes on the wire
        self.precopy_bytes = 0
        self.downtime_bytes = 0
        self.normal = self.duplicate = 0
        self.remaining_pages = 0
        self.dirty_rate = 0.0           # pages dirtied per second, last round
        self.bandwidth = 0.0            # bytes per second, last round
        self.round_log: list[dict] = []  # per round: pages, bytes, seconds, dirtied
        self.pause_seconds = 0.0        # how long the final stop took to take hold
        self.downtime_parts: dict | None = None   # seconds: pause, send, target; pages
        self.blocks: list[tuple[int, int]] = []     # (disk, block) still to send
        self._cancel = threading.Event()
        self._sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="hvemu-migration", daemon=True)

    # ---- what query-migrate says ----
    def info(self) -> dict:
        now = time.monotonic()
        total = self.total_seconds if self.total_seconds is not None else now - self.started
        ram = {
            "transferred": self.transferred,
            "remaining": self.remaining_pages * PAGE,
            "total": self.vm.config.memory,
            "duplicate": self.duplicate,
            "skipped": 0,
            "normal": self.normal,
            "normal-bytes": self.normal * PAGE,
            "dirty-pages-rate": int(self.dirty_rate),
            "mbps": round(self.bandwidth * 8 / 1e6, 3),
            "dirty-sync-count": self.rounds,
            "page-size": PAGE,
            "precopy-bytes": self.precopy_bytes,
            "downtime-bytes": self.downtime_bytes,
            "postcopy-bytes": 0,
            "pages-per-second": int(self.bandwidth / PAGE),
        }
        out = {"status": self.status, "total-time": _ms(total), "ram": ram}
        if self.setup_seconds is not None:
            out["setup-time"] = _ms(self.setup_seconds)
        if self.status == "completed":
            out["downtime"] = _ms(self.downtime_seconds)
        elif self.expected_downtime is not None:
            out["expected-downtime"] = _ms(self.expected_downtime)
        if self.error is not None:
            out["error-desc"] = self.error
        out["x-rounds"] = list(self.round_log)
        out["x-downtime-exact"] = self.downtime_seconds
        out["x-downtime-parts"] = self.downtime_parts
        return out

    @property
    def active(self) -> bool:
        return self.status in ("setup", "active", "device", "cancelling")

    def wait(self, timeout: float | None = None) -> dict:
        self.thread.join(timeout)
        return self.info()

    def cancel(self) -> None:
        """migrate_cancel: the source goes on running; the target refuses what it got."""
        if self.active:
            self.status = "cancelling"
            self._cancel.set()

    # ---- the work ----
    def _send(self, data: bytes) -> None:
        if self._cancel.is_set():
            raise MigrationError("cancelled")
        self._sock.sendall(data)
        self.transferred += len(data)

    def _reply(self) -> str:
        """The target's one-line answer."""
        buf = b""
        self._sock.settimeout(REPLY_TIMEOUT)
        while not buf.endswith(b"\n"):
            try:
                data = self._sock.recv(1024)
            except TimeoutError:
                raise MigrationError("the target did not answer") from None
            if not data:
                raise MigrationError("the target closed the connection"
                                     + (f" ({buf.decode(errors='replace')})" if buf else ""))
            buf += data
        self._sock.settimeout(None)
        return buf.decode(errors="replace").strip()

    def _send_pages(self, pages: np.ndarray, final: bool) -> int:
        """Send pages in RAM sections of BATCH; returns the bytes sent."""
        import numpy as np  # (imported here: not needed to start hvemu)
        memory = self.vm.memory
        compress = self.params["compress"]
        limit = self.params["max-bandwidth"]
        sent = 0
        begun = time.monotonic()
        for i in range(0, len(pages), BATCH):
            batch = pages[i:i + BATCH]
            data = memory.read_pages(batch)
            nonzero = np.frombuffer(data, dtype=np.uint64).reshape(len(batch), 512).any(axis=1)
            if nonzero.all():
                full, zero = batch, batch[:0]
            else:
                full, zero = batch[nonzero], batch[~nonzero]
                data = np.frombuffer(data, dtype=np.uint8).reshape(len(batch), PAGE)[nonzero]
                data = data.tobytes()
            if compress:
                data = zlib.compress(data, 1)
            head = b"".join((RAM_HEAD.pack(RAM_ZLIB if compress else 0, len(full), len(zero)),
                             full.tobytes(), zero.tobytes()))
            # no CRC (the stream's header says so; END's SHA-256 covers it), and the
            # pages go as they are, not copied into one record: the downtime is this
            head = SECTION.pack(b"RAM ", len(head) + len(data), 0) + head
            self._sha.update(head)
            self._sha.update(data)
            self._send(head)
            self._send(data)
            record_len = len(head) + len(data)
            sent += record_len
            self.normal += len(full)
            self.duplicate += len(zero)
            self.remaining_pages = max(0, self.remaining_pages - len(batch))
            if final:
                self.downtime_bytes += record_len
            else:
                self.precopy_bytes += record_len
            if limit and not final:                 # max-bandwidth: hold back
                ahead = sent / limit - (time.monotonic() - begun)
                if ahead > 0:
                    time.sleep(ahead)
        return sent

    def _harvest(self) -> np.ndarray:
        """The pages written since the last harvest; write-protect again (VM stopped).
        With blk, the disks' blocks written since, too (into self.blocks)."""
        pages = self.vm.memory.dirty_log_harvest()
        for vc in self.vm.vcpus:
            vc.vcpu.write_protect()
        if self.blk:
            self.blocks = [(i, b) for i, d in enumerate(self.vm.disks) for b in sorted(d.dirty)]
            for d in self.vm.disks:
                d.dirty.clear()
        self.rounds += 1
        return pages

    def _send_blocks(self, final: bool) -> int:
        """Block migration: send the disk blocks in self.blocks; returns the bytes."""
        sent = 0
        disks = self.vm.disks
        for i, b in self.blocks:
            disk = disks[i]
            pos = b * DIRTY_BLOCK
            record = snapshot.blk_section(i, pos, disk.pread(pos, min(DIRTY_BLOCK,
                                                                      disk.size - pos)))
            self._sha.update(record)
            self._send(record)
            sent += len(record)
            if final:
                self.downtime_bytes += len(record)
            else:
                self.precopy_bytes += len(record)
        self.blocks = []
        return sent

    def _run(self) -> None:
        vm = self.vm
        memory = vm.memory
        stop = None
        logging = False
        self._sha = hashlib.sha256()
        try:
            try:
                self._sock = socket.create_connection((self.host, self.port),
                                                      timeout=CONNECT_TIMEOUT)
            except OSError as e:
                raise MigrationError(f"cannot connect to {self.uri}: {e.strerror or e}") from None
            self._sock.settimeout(None)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = snapshot.header(stream=True, ram_crc=False) + json_section(
                b"CONF", snapshot.machine(vm, disks=False))
            self._sha.update(first)
            self._send(first)
            answer = self._reply()
            if answer != "ok":
                raise MigrationError(f"the target {answer}")
            self.setup_seconds = time.monotonic() - self.started
            self.status = "active"
            with Stopped(vm):
                memory.dirty_log_start()
                logging = True
                for vc in vm.vcpus:
                    vc.vcpu.write_protect()
                pending = memory.touched_indices()
                if self.blk:
                    for disk in vm.disks:
                        disk.dirty = set()
                    self.blocks = [(i, b) for i, d in enumerate(vm.disks)
                                   for b in range((d.size + DIRTY_BLOCK - 1) // DIRTY_BLOCK)]
            self.remaining_pages = len(pending)
            while True:
                begun = time.monotonic()
                sent = self._send_pages(pending, final=False)
                sent += self._send_blocks(final=False)
                seconds = max(time.monotonic() - begun, 1e-6)
                self.bandwidth = sent / seconds if sent else self.bandwidth
                marker = json_section(b"RND ", {"round": self.rounds})
                self._sha.update(marker)
                self._send(marker)
                asked = time.monotonic()
                stop = Stopped(vm)
                stop.__enter__()
                stopped_at = asked
                pending = self._harvest()
                self.remaining_pages = len(pending)
                self.dirty_rate = len(pending) / seconds
                self.round_log.append({"sent_bytes": sent, "seconds": round(seconds, 6),
                                       "dirtied_pages": len(pending)})
                bandwidth = self.bandwidth or 1.0
                self.expected_downtime = (len(pending) * PAGE
                                          + len(self.blocks) * DIRTY_BLOCK) / bandwidth
                if (self.expected_downtime * 1000 <= self.params["downtime-limit"]
                        or self.rounds >= self.params["x-max-rounds"] or not stop.resume):
                    break
                stop.__exit__(None, None, None)
                stop = None
            # the VM is stopped: the rest, and the device state
            self.pause_seconds = stop.seconds
            self.status = "device"
            self._send_pages(pending, final=True)
            self._send_blocks(final=True)
            memory.dirty_log_stop()
            logging = False
            for disk in vm.disks:
                if disk.fd >= 0 and not disk.readonly:
                    disk.flush()
            rom = section(b"ROM ", zlib.compress(memory.read(memory.rom_base, len(memory.rom))))
            stat = json_section(b"STAT", snapshot.capture(vm))
            tail = rom + stat
            self._sha.update(tail)
            end = section(b"END ", self._sha.digest())
            self._send(tail + end)
            self.downtime_bytes += len(tail) + len(end)
            sent_at = time.monotonic()
            answer = self._reply()
            if answer != "done":
                raise MigrationError(f"the target {answer}")
            now = time.monotonic()
            self.downtime_seconds = now - stopped_at
            self.downtime_parts = {"pause": round(stop.seconds, 6),
                                   "send": round(sent_at - stopped_at - stop.seconds, 6),
                                   "target": round(now - sent_at, 6),
                                   "pages": len(pending)}
            self.total_seconds = now - self.started
            self.remaining_pages = 0
            self.status = "completed"
            vm.migrated_to = self.uri
            stop.resume = False                    # the source stays paused (postmigrate)
            if vm.state == "running" and not vm.control.paused:
                vm.pause()
        except (OSError, HvemuError) as e:
            cancelled = self._cancel.is_set()
            self.status = "cancelled" if cancelled else "failed"
            if not cancelled:
                self.error = (str(e) if isinstance(e, HvemuError) else
                              f"the connection to {self.uri} failed: {e.strerror or e}")
            self.total_seconds = time.monotonic() - self.started
        finally:
            for disk in vm.disks:
                disk.dirty = None
            if logging:
                memory.dirty_log_stop()
            if stop is not None:
                stop.__exit__(None, None, None)
            if self._sock is not None:
                try:
                    self._sock.close()
                except OSError:
                    pass


def start(vm, uri: str, blk: bool = False, **params) -> Migration:
    """migrate: begin migrating vm to uri in a thread (blk: copy the disks too, onto the
    target's own files of the same sizes); returns the Migration."""
    current = getattr(vm, "migration", None)
    if current is not None and current.active:
        raise HvemuError("a migration is already in progress")
    snapshot.check_local(vm)
    if vm.state == "shutdown":
        raise HvemuError("the VM is shut down")
    merged = parameters(vm) | set_parameters_dict(params)
    m = Migration(vm, uri, merged, blk=blk)
    vm.migration = m
    m.thread.start()
    return m


def set_parameters_dict(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        key = key.replace("_", "-")
        if key not in DEFAULTS:
            raise UsageError(f"migration parameter {key!r}: not one of {', '.join(DEFAULTS)}")
        out[key] = value
    return out


def query(vm) -> dict:
    """query-migrate: {} before any migration, as QEMU answers."""
    m = getattr(vm, "migration", None)
    return m.info() if m is not None else {}


def cancel(vm) -> None:
    """migrate_cancel."""
    m = getattr(vm, "migration", None)
    if m is not None:
        m.cancel()


# ---------------------------------------------------------------------------
# the target
# ---------------------------------------------------------------------------

def listen(uri: str) -> socket.socket:
    host, port = parse_uri(uri)
    try:
        srv = socket.create_server((host, port), reuse_port=False)
    except OSError as e:
        raise HvemuError(f"--incoming {uri}: cannot listen ({e.strerror or e})") from None
    return srv


def receive(vm, uri: str, server: socket.socket | None = None, ready=None) -> dict:
    """--incoming: wait on uri for one migration and load it into vm, which is then ready
    to run; SnapshotError (one line) when the stream is refused.  `ready` is called
    once listening."""
    srv = server or listen(uri)
    if ready is not None:
        ready()
    try:
        conn, peer = srv.accept()
    finally:
        srv.close()
    what = f"incoming migration from {peer[0]}:{peer[1]}"
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = conn.makefile("rb", buffering=1 << 20)

    def read(n: int) -> bytes:
        try:
            return stream.read(n)
        except OSError as e:
            raise SnapshotError(f"{what}: the connection failed ({e.strerror or e})") from None

    def answer(line: str) -> None:
        try:
            conn.sendall(line.encode() + b"\n")
        except OSError:
            pass

    def on_conf(conf: dict) -> None:
        snapshot.compare(conf, snapshot.machine(vm, disks=False), what, disks=False)
        answer("ok")

    try:
        reader = SectionReader(read, what)
        if not reader.header() & snapshot.FLAG_STREAM:
            raise SnapshotError(f"{what}: not a migration stream")
        info = snapshot.load_stream(vm, reader, on_conf=on_conf)
    except SnapshotError as e:
        answer(f"refused: {e}")
        conn.close()
        raise
    answer("done")
    conn.close()
    vm.state = "created"
    return info


# ---------------------------------------------------------------------------
# QMP: the handlers, for the QMP server's command registry (hvemu/control/qmp.py):
#     for name, fn in QMP_COMMANDS.items():
#         wrapper = lambda session, _fn=fn, **args: _fn(session.control.vm, **args)
#         wrapper.parameters = fn.parameters          # QMP names -> required
#         command(name)(wrapper)
# Each takes the VM and the command's arguments by their QMP names (dashes), returns the
# QMP "return" value, and raises HvemuError (an error reply's desc) when it refuses.
# ---------------------------------------------------------------------------

def _qmp(parameters: dict):
    def mark(fn):
        fn.parameters = parameters
        return fn
    return mark


@_qmp({"uri": True, "blk": False, "inc": False, "detach": False, "resume": False})
def qmp_migrate(vm, **args) -> dict:
    if args.get("inc"):
        raise HvemuError("incremental block migration (inc) is not supported: give blk "
                         "for a full copy, or put the disks on a shared host file")
    if args.get("resume"):
        raise HvemuError("postcopy resume is not supported")
    start(vm, args["uri"], blk=bool(args.get("blk")))
    return {}


@_qmp({})
def qmp_query_migrate(vm) -> dict:
    return query(vm)


@_qmp({key: False for key in DEFAULTS})
def qmp_migrate_set_parameters(vm, **args) -> dict:
    set_parameters(vm, **args)
    return {}


@_qmp({})
def qmp_query_migrate_parameters(vm) -> dict:
    return dict(parameters(vm))


@_qmp({})
def qmp_migrate_cancel(vm) -> dict:
    cancel(vm)
    return {}


@_qmp({"file": True})
def qmp_savevm(vm, **args) -> dict:
    """x-hvemu-savevm {"file": PATH}: the whole VM to a snapshot file."""
    return {"bytes": vm.save(args["file"])}


@_qmp({"file": True})
def qmp_loadvm(vm, **args) -> dict:
    """x-hvemu-loadvm {"file": PATH}: the VM goes on from a snapshot file (of the same
    machine); a truncated, corrupt or foreign file leaves it as it was."""
    snapshot.load(vm, args["file"])
    return {}


QMP_COMMANDS = {
    "migrate": qmp_migrate,
    "query-migrate": qmp_query_migrate,
    "migrate-set-parameters": qmp_migrate_set_parameters,
    "query-migrate-parameters": qmp_query_migrate_parameters,
    "migrate_cancel": qmp_migrate_cancel,
    "x-hvemu-savevm": qmp_savevm,
    "x-hvemu-loadvm": qmp_loadvm,
}
