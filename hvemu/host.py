"""`hvemu host CONFIG.toml`: several VMs on one hypervisor.

    host_memory = "512M"        # optional: the host frames all VMs together may hold
    [[vm]]
    name = "web"                # unique; default vm0, vm1, ...
    image = "hello"             # or bios = ..., kernel = ..., initrd = ..., append = ...
    memory = "256M"             # guest RAM (as --memory); may add up past host_memory
    vcpus = 2
    disks = ["web.img", "shared.img,readonly"]
    console = "file:web.log"    # file:PATH, tcp:127.0.0.1:PORT (raw, telnet-able), stdio
                                # (at most one VM), or none (default: none)
    shares = 1                  # this VM's quantum is shares x the base quantum
    timeout = 30                # seconds, as --timeout; max_instructions as well
    clock = "virtual"
    hypervisor = "hosted"       # the system-VM class (as --hypervisor); default: the
                                # top-level hypervisor = ..., else native

VMs of one class share one hypervisor (its frame pool, capped by host_memory, and its
scheduler).  With several classes, each class's hypervisor runs its VMs at the same time
as the others (the native one on a thread of its own): host time is then shared between
the classes by the host OS, and within a class by its scheduler.  A hosted VM's console
is a file, stdio or none (a tcp: console needs a listener thread that a hosted
hypervisor's forked process does not have yet).

Every error in the file is one line naming the line and the key.  At the end a table
gives each VM's outcome, exit status, instructions, exits, MIPS, and guest RAM next to
the host frames it held.  `hvemu host` exits with 0 if every VM ended with 0, else
with the first other status in the file's order (a VM's own exit status is what
`hvemu boot` would have given it).
"""
from __future__ import annotations

import os
import socket
import stat
import sys
import threading
from dataclasses import dataclass

from .console import Console
from .disks import DiskSpec
from .errors import HvemuError, NoInputError, UsageError
from .units import parse_count, parse_seconds, parse_size

VM_KEYS = {"name", "image", "bios", "kernel", "initrd", "append", "memory", "vcpus", "disks",
           "console", "shares", "timeout", "max_instructions", "clock", "reference",
           "hypervisor"}
HOST_KEYS = {"host_memory", "hypervisor", "vm"}


class ConfigError(UsageError):
    """A CONFIG.toml that cannot be used (exit 64, one line naming the line and key)."""


@dataclass
class VmEntry:
    index: int
    config: object                   # a VMConfig
    console: str
    hypervisor: str = "native"       # the class of hypervisor that runs it


def _line_of(text: str, vm_index: int | None, key: str | None) -> int | None:
    """The line (1-based) where `key` is set, in the vm_index-th [[vm]] table (None: at
    the top level), or that table's header line if the key is not there."""
    table, header = -1, None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[[") and stripped.replace(" ", "").startswith("[[vm]]"):
            table += 1
            if table == vm_index:
                header = number
            continue
        if stripped.startswith("["):
            table = -2 if vm_index is None else table
            continue
        in_table = (vm_index is None and table == -1) or (table == vm_index)
        if in_table and key is not None and stripped.split("=", 1)[0].strip() == key:
            return number
    return header


class Config:
    """A parsed CONFIG.toml: host settings and one VmEntry per [[vm]]."""

    def __init__(self, path: str):
        import tomllib
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise NoInputError(f"{path}: no such file") from None
        except OSError as e:
            raise NoInputError(f"{path}: cannot read ({e.strerror})") from None
        self.text = raw.decode("utf-8", "replace")
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            import re
            where = re.search(r"\(at line (\d+), column \d+\)", str(e))
            line = f"{where.group(1)}:" if where else ""
            raise ConfigError(f"{path}:{line} not valid TOML: {e}") from None
        self.host_memory = None
        for key in data:
            if key not in HOST_KEYS:
                self.fail(None, key, f"unknown setting {key!r} (known: host_memory, "
                          "hypervisor, [[vm]])")
        self.hypervisor = self._class(None, data.get("hypervisor", "native"))
        if "host_memory" in data:
            self.host_memory = self._size(None, "host_memory", data["host_memory"])
        vms = data.get("vm", [])
        if not isinstance(vms, list) or not vms:
            self.fail(None, None, "no [[vm]] tables: give at least one VM")
        self.vms = [self._vm(i, entry) for i, entry in enumerate(vms)]
        self._check_across()

    def fail(self, vm_index: int | None, key: str | None, message: str):
        line = _line_of(self.text, vm_index, key)
        where = f"line {line}" if line is not None else "?"
        what = f"[[vm]] #{vm_index + 1}" if vm_index is not None else ""
        if key is not None:
            what = f"{what} {key}".strip()
        raise ConfigError(f"{self.path}:{where.removeprefix('line ')}: {what}: {message}"
                          if what else f"{self.path}:{where.removeprefix('line ')}: {message}")

    def _size(self, i, key, value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(i, key, f"give a size like \"256M\", not {value!r}")
        try:
            return parse_size(str(value), key.replace("_", " "), bare="M")
        except HvemuError as e:
            self.fail(i, key, str(e))

    def _count(self, i, key, value, low, high) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(i, key, f"give a whole number from {low} to {high}, not {value!r}")
        try:
            return parse_count(str(value), key, low, high)
        except HvemuError as e:
            self.fail(i, key, str(e))

    def _class(self, i, value) -> str:
        from .hypervisor import CLASSES
        kind = self._str(i, "hypervisor", value)
        if kind not in CLASSES:
            self.fail(i, "hypervisor", f"{kind!r}: give one of {', '.join(CLASSES)}")
        return kind

    def _str(self, i, key, value) -> str:
        if not isinstance(value, str):
            self.fail(i, key, f"give a string, not {value!r}")
        return value

    def _vm(self, i: int, entry) -> VmEntry:
        from . import images
        from .vm import MAX_VCPUS, VMConfig, check_memory_size
        if not isinstance(entry, dict):
            self.fail(i, None, "each [[vm]] must be a table")
        for key in entry:
            if key not in VM_KEYS:
                self.fail(i, key, f"unknown key {key!r} (known: {', '.join(sorted(VM_KEYS))})")
        base = os.path.dirname(os.path.abspath(self.path))

        def path_of(key):
            if key not in entry:
                return None
            value = self._str(i, key, entry[key])
            candidate = value if os.path.isabs(value) else os.path.join(base, value)
            try:
                return images.resolve(candidate if os.path.exists(candidate) else value)
            except HvemuError as e:
                self.fail(i, key, str(e).split(": ", 1)[-1])
        image, bios = path_of("image"), path_of("bios")
        if image is not None and bios is not None:
            self.fail(i, "bios", "give either image or bios, not both")
        kernel = path_of("kernel")
        if image is None and bios is None and kernel is None:
            self.fail(i, None, "no guest: give image, bios or kernel")
        initrd = None
        if "initrd" in entry:
            value = self._str(i, "initrd", entry["initrd"])
            initrd = value if os.path.isabs(value) else os.path.join(base, value)
        memory = self._size(i, "memory", entry["memory"]) if "memory" in entry else 128 << 20
        try:
            check_memory_size(memory)
        except HvemuError as e:
            self.fail(i, "memory", str(e))
        disks = []
        for text in entry.get("disks", []) if isinstance(entry.get("disks", []), list) \
                else self.fail(i, "disks", "give a list of disk specs"):
            spec = self._str(i, "disks", text)
            try:
                d = DiskSpec.parse(spec)
            except HvemuError as e:
                self.fail(i, "disks", str(e))
            if not os.path.isabs(d.path):
                d.path = os.path.join(base, d.path)
            disks.append(d)
        timeout = None
        if "timeout" in entry:
            try:
                timeout = parse_seconds(str(entry["timeout"]), "timeout")
            except HvemuError as e:
                self.fail(i, "timeout", str(e))
        max_insns = (self._count(i, "max_instructions", entry["max_instructions"], 1,
                                 (1 << 64) - 1) if "max_instructions" in entry else None)
        clock = self._str(i, "clock", entry.get("clock", "virtual"))
        if clock not in ("virtual", "host"):
            self.fail(i, "clock", f"{clock!r}: give virtual or host")
        console = self._str(i, "console", entry.get("console", "none"))
        if not (console in ("stdio", "none") or console.startswith(("file:", "tcp:"))):
            self.fail(i, "console", f"{console!r}: give file:PATH, tcp:127.0.0.1:PORT, stdio "
                      "or none")
        name = self._str(i, "name", entry.get("name", f"vm{i}"))
        kind = self._class(i, entry.get("hypervisor", self.hypervisor))
        if kind == "hosted" and console.startswith("tcp:"):
            self.fail(i, "console", f"{console!r}: a hosted VM's console is file:PATH, stdio "
                      "or none")
        config = VMConfig(
            image=image or bios, kernel=kernel, memory=memory, initrd=initrd,
            append=self._str(i, "append", entry.get("append", "")),
            vcpus=self._count(i, "vcpus", entry.get("vcpus", 1), 1, MAX_VCPUS),
            shares=self._count(i, "shares", entry.get("shares", 1), 1, 1000),
            disks=disks, timeout=timeout, max_instructions=max_insns, clock=clock,
            reference=bool(entry.get("reference", False)), name=name)
        return VmEntry(i, config, console, kind)

    def _check_across(self) -> None:
        """What no single [[vm]] shows: names, one stdio console, disks two VMs share."""
        seen = {}
        for e in self.vms:
            if e.config.name in seen:
                self.fail(e.index, "name", f"{e.config.name!r} names VM #{seen[e.config.name] + 1} "
                          "too: give each VM its own name")
            seen[e.config.name] = e.index
        stdio = [e for e in self.vms if e.console == "stdio"]
        if len(stdio) > 1:
            self.fail(stdio[1].index, "console", "stdio is the console of another VM already: "
                      "at most one VM may have it")
        owners = {}
        for e in self.vms:
            for d in e.config.disks:
                try:
                    st = os.stat(d.path)
                except OSError:
                    continue                          # the VM's own checks name it
                if not stat.S_ISREG(st.st_mode) and not stat.S_ISBLK(st.st_mode):
                    continue
                key = (st.st_dev, st.st_ino)
                for other, other_spec in owners.get(key, []):
                    if other != e.index and not (d.readonly and other_spec.readonly):
                        self.fail(e.index, "disks", f"{d.path} is a disk of VM "
                                  f"#{other + 1} too, and one of them may write it: give "
                                  "each VM its own disk file (or both ,readonly)")
                owners.setdefault(key, []).append((e.index, d))


# ---- consoles ----

class FileConsole(Console):
    """A VM's console output into a file (no input)."""

    def __init__(self, path: str):
        try:
            self.file = open(path, "wb")
        except OSError as e:
            raise UsageError(f"console file:{path}: cannot create it ({e.strerror})") from None
        super().__init__(echo=self.file)


class TcpConsole(Console):
    """A VM's console on a TCP port of 127.0.0.1, raw bytes both ways (like QEMU's
    `-serial tcp::PORT,server,nowait`): one client at a time; output while nobody is
    connected is only kept in the console's tail."""

    def __init__(self, host: str, port: int):
        super().__init__(input_expected=True)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.server.bind((host, port))
        except OSError as e:
            self.server.close()
            raise UsageError(f"console tcp:{host}:{port}: cannot listen there "
                             f"({e.strerror})") from None
        self.server.listen(1)
        self.address = self.server.getsockname()
        self.client: socket.socket | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="hvemu-console", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                if self.client is not None:
                    self.client.close()
                self.client = conn
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    break
                self.send(data)
            with self._lock:
                if self.client is conn:
                    self.client = None
            conn.close()

    def output(self, data: bytes) -> None:
        super().output(data)
        with self._lock:
            client = self.client
        if client is not None:
            try:
                client.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.server.close()
        except OSError:
            pass


def make_console(spec: str) -> Console:
    if spec == "none":
        return Console()
    if spec == "stdio":
        from .console import stdout_console
        return stdout_console(True)
    if spec.startswith("file:"):
        return FileConsole(spec[len("file:"):])
    host, _, port = spec[len("tcp:"):].rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"console {spec!r}: give tcp:127.0.0.1:PORT (a port from 1 to 65535)")
    return TcpConsole("127.0.0.1", int(port))


# ---- running ----

def run_host(path: str):
    """Build and run every VM of CONFIG.toml; returns (hypervisors, vms, {vm: Outcome})."""
    from .hypervisor.hosted import make_hypervisor
    config = Config(path)
    kinds = list(dict.fromkeys(e.hypervisor for e in config.vms))     # in file order
    hvs = {k: make_hypervisor(k, host_memory=config.host_memory,
                              reserve=sum(e.config.memory for e in config.vms
                                          if e.hypervisor == k)) for k in kinds}
    vms, consoles = [], []
    try:
        for entry in config.vms:
            console = make_console(entry.console)
            consoles.append(console)
            try:
                vm = hvs[entry.hypervisor].create_vm(entry.config, console)
            except MemoryError:
                raise UsageError(f"{path}: VM {entry.config.name!r}: host_memory "
                                 f"({(config.host_memory or 0) >> 20} MiB) is too small even "
                                 "for its boot images") from None
            except HvemuError as e:
                raise type(e)(f"VM {entry.config.name!r}: {e}") from None
            vms.append(vm)
        outcomes = run_classes(list(hvs.values()))
    finally:
        for console in consoles:
            if isinstance(console, TcpConsole):
                console.close()
            if isinstance(console, FileConsole):
                console.file.close()
    return list(hvs.values()), vms, outcomes


def run_classes(hvs: list) -> dict:
    """Run each hypervisor's VMs, all at once: the first in this (the main) thread, each
    other on a thread of its own.  (A hosted hypervisor forwards SIGTERM and ignores
    Ctrl-C only where it can: in the main thread.)"""
    result: dict = {}
    failures: list = []

    def body(hv):
        try:
            result.update(hv.run())
        except BaseException as e:           # noqa: BLE001 -- re-raised below
            failures.append(e)
    threads = [threading.Thread(target=body, args=(hv,), name=f"{hv.kind} hypervisor")
               for hv in hvs[1:]]
    for t in threads:
        t.start()
    try:
        result.update(hvs[0].run())
    finally:
        if sys.exc_info()[0] is not None:
            for hv in hvs[1:]:
                for vm in hv.vms:
                    vm.shutdown()
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    return result


def host_rss() -> int:
    """This process's resident set size in bytes (Linux /proc), or 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def host_table(hvs, vms, outcomes, exit_code_of) -> tuple[object, list[dict]]:
    """A rich table and the same rows as dicts."""
    from rich.table import Table
    rows = []
    for vm in vms:
        out = outcomes[vm]
        s = out.stats
        rows.append({"vm": vm.name, "result": out.reason, "exit_status": exit_code_of(out),
                     "vcpus": len(vm.vcpus), "instructions": s.instructions,
                     "exits": s.total_exits, "seconds": round(s.seconds, 3),
                     "mips": round(s.mips, 1), "guest_ram": vm.config.memory,
                     "host_frames": s.host_frames, "detail": out.detail,
                     "hypervisor": vm.hypervisor.kind})
    peak = sum(hv.pool.peak for hv in hvs)
    limit = hvs[0].host_memory
    t = Table(title=f"hvemu host: {len(vms)} VMs, "
                    f"{sum(vm.config.memory for vm in vms) >> 20} MiB of guest RAM; host frames "
                    f"at most {peak / (1 << 20):.1f} MiB"
                    + (f" of {limit >> 20} MiB" + (" per class" if len(hvs) > 1 else "")
                       if limit else "")
                    + f"; host RSS {host_rss() / (1 << 20):.0f} MiB")
    for col in ("VM", "class", "result", "status", "vCPUs", "instructions", "exits", "seconds",
                "MIPS", "guest RAM", "host frames"):
        t.add_column(col, justify="left" if col in ("VM", "class", "result") else "right")
    for r in rows:
        t.add_row(r["vm"], r["hypervisor"], r["result"], str(r["exit_status"]), str(r["vcpus"]),
                  f"{r['instructions']:,}", f"{r['exits']:,}", f"{r['seconds']:.3f}",
                  f"{r['mips']:,.1f}", f"{r['guest_ram'] >> 20} MiB",
                  f"{r['host_frames'] / (1 << 20):.1f} MiB")
    return t, rows


def print_details(vms, outcomes) -> None:
    for vm in vms:
        out = outcomes[vm]
        if out.reason not in ("poweroff", "shutdown") and out.detail:
            print(f"hvemu: VM {vm.name!r}: {out.detail}", file=sys.stderr)
