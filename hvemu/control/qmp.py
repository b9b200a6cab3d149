"""QMP, QEMU's machine protocol, on a socket: `--qmp unix:PATH,server,wait=off` or
`--qmp tcp:127.0.0.1:PORT,server,wait=off`.

The protocol is QEMU's (docs/interop/qmp-spec): on connecting a client gets the
greeting, negotiates with `qmp_capabilities`, then sends `{"execute": NAME,
"arguments": {...}, "id": ...}` objects and gets `{"return": ...}` or `{"error":
{"class": ..., "desc": ...}}` with the same id; asynchronous events (STOP, RESUME,
RESET, SHUTDOWN, POWERDOWN) arrive as `{"event": ..., "data": ..., "timestamp":
{"seconds": ..., "microseconds": ...}}`.  Several clients may be connected, one after
the other or at once; each gets the events.

Commands are a registry, COMMANDS: name -> handler(session, **arguments).  Another
module adds its own with `@command("name")` (hvemu's own commands are `x-`-prefixed, as
QEMU's convention for non-standard ones asks).  A handler raises QmpError for an error
reply; its keyword parameters are the command's arguments, checked before it runs."""
from __future__ import annotations

import inspect
import json
import queue
import socket
import threading
import time
from collections.abc import Callable

from .endpoint import Endpoint, close_listener, listen
from .monitor import Monitor, version

COMMANDS: dict[str, Callable] = {}
MAX_INPUT = 1 << 20             # bytes of one incomplete JSON value before it is refused
OUT_QUEUE = 10000               # replies and events queued for a client that is not reading


class QmpError(Exception):
    def __init__(self, desc: str, cls: str = "GenericError"):
        super().__init__(desc)
        self.cls = cls
        self.desc = desc


def command(name: str):
    """Register a QMP command handler under name (for other modules too)."""
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def version_info() -> dict:
    parts = [int(p) if p.isdigit() else 0 for p in version().split(".")[:3]]
    major, minor, micro = (parts + [0, 0, 0])[:3]
    return {"qemu": {"major": major, "minor": minor, "micro": micro},
            "package": f"hvemu {version()}"}


# ---- the commands ----
@command("query-version")
def _query_version(session):
    return version_info()


@command("query-commands")
def _query_commands(session):
    return [{"name": name} for name in sorted({"qmp_capabilities", *COMMANDS})]


@command("query-status")
def _query_status(session):
    status = session.control.status()
    return {"running": status == "running", "singlestep": False, "status": status}


@command("stop")
def _stop(session):
    session.control.stop()
    return {}


@command("cont")
def _cont(session):
    if session.control.vm.state == "shutdown":
        raise QmpError("the VM is shut down: it cannot continue")
    session.after_reply(session.control.cont)        # the reply goes out before it acts
    return {}


@command("system_reset")
def _system_reset(session):
    session.control.system_reset()
    return {}


@command("system_powerdown")
def _system_powerdown(session):
    session.after_reply(session.control.system_powerdown)        # the reply goes out before it acts
    return {}


@command("quit")
def _quit(session):
    session.after_reply(session.control.quit)        # the reply goes out before it acts
    return {}


@command("query-cpus-fast")
def _query_cpus_fast(session):
    vm = session.control.vm
    return [{"cpu-index": i, "qom-path": f"/machine/soc/harts[{i}]",
             "thread-id": session.control.thread_id, "target": "riscv64",
             "props": {"node-id": 0, "socket-id": 0, "core-id": i, "thread-id": 0}}
            for i, _vc in enumerate(vm.vcpus)]


@command("human-monitor-command")
def _human_monitor_command(session, **kwargs):
    line = kwargs.get("command-line")
    cpu = kwargs.get("cpu-index")
    if not isinstance(line, str):
        raise QmpError("Parameter 'command-line' is missing" if line is None else
                       "Invalid parameter type for 'command-line', expected: string")
    if cpu is not None:
        if not isinstance(cpu, int) or not 0 <= cpu < len(session.control.vm.vcpus):
            raise QmpError(f"Parameter 'cpu-index' expects a vCPU from 0 to "
                           f"{len(session.control.vm.vcpus) - 1}")
        session.monitor.cpu = cpu
    return session.monitor.execute(line)


_human_monitor_command.parameters = {"command-line": True, "cpu-index": False}


@command("x-hvemu-stats")
def _x_hvemu_stats(session):
    """hvemu's own figures: instructions, MIPS, exits by reason, privileged instructions
    by class, exceptions, interrupts, MMIO by device, SBI calls, shadow TLB counters,
    and per vCPU its instret and pc."""
    vm = session.control.vm
    figures = session.control.stats()
    figures["vcpus"] = [{"cpu-index": i, "instret": vc.vcpu.instret, "pc": vc.vcpu.pc}
                        for i, vc in enumerate(vm.vcpus)]
    return figures


def check_arguments(fn, name: str, args: dict) -> None:
    """QEMU's argument errors: an unexpected or a missing parameter."""
    declared = getattr(fn, "parameters", None)
    if declared is None:
        params = list(inspect.signature(fn).parameters.values())[1:]
        declared = {p.name.replace("_", "-"): p.default is inspect.Parameter.empty
                    for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}
    for key in args:
        if key not in declared:
            raise QmpError(f"Parameter '{key}' is unexpected")
    for key, required in declared.items():
        if required and key not in args:
            raise QmpError(f"Parameter '{key}' is missing")


# ---- the protocol ----
def split_value(text: str) -> int | None:
    """The end of the first JSON value in text (which starts with no whitespace), or None
    if it is not complete yet.  A value not in braces or brackets ends at whitespace."""
    if text[0] not in "{[":
        for i, c in enumerate(text):
            if c in " \t\r\n":
                return i
        return None if len(text) < 64 else len(text)
    depth = 0
    in_string = escaped = False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None



class Session:
    """One client connection."""

    def __init__(self, server: QmpServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.control = server.control
        self.monitor = Monitor(server.control.vm, server.control)
        self.negotiated = False
        self.lock = threading.Lock()
        self.closed = False
        self._after: list = []
        # replies and events go out from a writer thread: a client that does not read
        # must never stall the thread that emits an event (the VM's scheduler)
        self._out: queue.Queue = queue.Queue(OUT_QUEUE)
        self._writer = threading.Thread(target=self._write_loop, name="hvemu-qmp-out",
                                        daemon=True)
        self._writer.start()

    def after_reply(self, fn) -> None:
        """Run fn once the reply to the current command is sent (cont, quit: a VM that
        then ends at once must not take the reply with it)."""
        self._after.append(fn)

    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode() + b"\r\n"
        with self.lock:
            if self.closed:
                return
            try:
                self._out.put_nowait(data)
            except queue.Full:                     # the client stopped reading: drop it
                self.closed = True
                self._hang_up()

    def _write_loop(self) -> None:
        while True:
            data = self._out.get()
            if data is None:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                with self.lock:
                    self.closed = True
                return

    def flush_and_close(self, timeout: float = 1.0) -> None:
        """Send what is queued (a last reply, SHUTDOWN), then hang up."""
        with self.lock:
            self.closed = True
        try:
            self._out.put_nowait(None)
        except queue.Full:
            pass
        self._writer.join(timeout)
        self._hang_up()

    def _hang_up(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def serve(self) -> None:
        self.send({"QMP": {"version": version_info(), "capabilities": []}})
        buf = ""
        pending = b""
        try:
            while not self.closed:
                try:
                    chunk = self.sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                pending += chunk
                try:
                    text = pending.decode()
                    pending = b""
                except UnicodeDecodeError as e:
                    if e.end >= len(pending) - 3 and e.reason == "unexpected end of data":
                        text, pending = pending[:e.start].decode(), pending[e.start:]
                    else:
                        text, pending = pending.decode("utf-8", "replace"), b""
                buf += text
                buf = self._drain(buf)
                if len(buf) > MAX_INPUT:           # one value this large: not a command
                    self.send({"error": {"class": "GenericError",
                                         "desc": f"QMP input exceeds {MAX_INPUT} bytes"}})
                    buf = ""
        finally:
            self.flush_and_close()
            try:
                self.sock.close()
            except OSError:
                pass
            self.server.forget(self)

    def _drain(self, buf: str) -> str:
        """Handle every complete JSON value in buf; return what is left (a partial one).

        Values are delimited as QEMU's JSON streamer does, by counting braces and
        brackets outside strings, so that a value split across reads is not taken for a
        malformed one; a complete value that does not parse is a GenericError."""
        while True:
            text = buf.lstrip()
            if not text:
                return ""
            end = split_value(text)
            if end is None:
                return text                        # incomplete: wait for more
            piece, buf = text[:end], text[end:]
            try:
                obj = json.loads(piece)
            except (json.JSONDecodeError, RecursionError) as e:
                desc = (f"JSON parse error, {e.msg}" if isinstance(e, json.JSONDecodeError)
                        else "JSON parse error, nesting too deep")
                self.send({"error": {"class": "GenericError", "desc": desc}})
                nl = buf.find("\n")               # and the rest of that line with it
                buf = buf[nl + 1:] if nl >= 0 else buf
                continue
            self.handle(obj)

    def handle(self, obj) -> None:
        if not isinstance(obj, dict):
            self.send({"error": {"class": "GenericError",
                                 "desc": "QMP input must be a JSON object"}})
            return
        reply: dict = {}
        if "id" in obj:
            reply["id"] = obj["id"]
        try:
            reply["return"] = self.dispatch(obj)
        except QmpError as e:
            reply.pop("return", None)
            reply["error"] = {"class": e.cls, "desc": e.desc}
        except Exception as e:                 # a bug in a handler: an error, not a hang
            reply["error"] = {"class": "GenericError",
                              "desc": f"internal error: {type(e).__name__}: {e}"}
        after, self._after = self._after, []
        if "error" in reply:
            after = []
        self.send(reply)
        for fn in after:
            fn()

    def dispatch(self, obj: dict):
        for key in obj:
            if key not in ("execute", "arguments", "id", "exec-oob"):
                raise QmpError(f"QMP input member '{key}' is unexpected")
        if "exec-oob" in obj:
            raise QmpError("QMP input member 'exec-oob' is unexpected: out-of-band "
                           "execution was not negotiated")
        name = obj.get("execute")
        if name is None:
            raise QmpError("QMP input lacks member 'execute'")
        if not isinstance(name, str):
            raise QmpError("QMP input member 'execute' must be a string")
        args = obj.get("arguments", {})
        if not isinstance(args, dict):
            raise QmpError("QMP input member 'arguments' must be an object")
        if name == "qmp_capabilities":
            if self.negotiated:
                raise QmpError("Capabilities negotiation is already complete, command "
                               "ignored", "CommandNotFound")
            enable = args.get("enable", [])
            if set(args) - {"enable"}:
                raise QmpError(f"Parameter '{sorted(set(args) - {'enable'})[0]}' is unexpected")
            if enable:
                raise QmpError(f"Capability '{enable[0]}' not available")
            self.negotiated = True
            return {}
        if not self.negotiated:
            raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           "CommandNotFound")
        fn = COMMANDS.get(name)
        if fn is None:
            raise QmpError(f"The command {name} has not been found", "CommandNotFound")
        check_arguments(fn, name, args)
        return fn(self, **{k.replace("-", "_") if not hasattr(fn, "parameters") else k: v
                           for k, v in args.items()})


class QmpServer:
    """A QMP socket for one VM: listens at once (errors before the guest runs), serves
    each client on its own thread, and sends the VM's events to every negotiated one."""

    def __init__(self, control, endpoint: Endpoint):
        self.control = control
        self.endpoint = endpoint
        self.sessions: list[Session] = []
        self._lock = threading.Lock()
        self.listener = listen(endpoint, "--qmp")
        self._closed = False
        control.vm.listeners.append(self.vm_event)

    def start(self) -> None:
        if self.endpoint.wait:               # wait=on: the guest waits for the first client
            conn, _ = self.listener.accept()
            self._serve(conn)
        threading.Thread(target=self._accept_loop, name="hvemu-qmp", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        session = Session(self, conn)
        with self._lock:
            self.sessions.append(session)
        threading.Thread(target=session.serve, name="hvemu-qmp-client", daemon=True).start()

    def forget(self, session: Session) -> None:
        with self._lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def emit(self, event: str, data: dict | None = None) -> None:
        now = time.time()
        msg = {"event": event, "timestamp": {"seconds": int(now),
                                             "microseconds": int(now * 1e6) % 1000000}}
        if data is not None:
            msg["data"] = data
        with self._lock:
            sessions = [s for s in self.sessions if s.negotiated]
        for s in sessions:
            s.send(msg)

    def vm_event(self, event: str, data: dict) -> None:
        """The VM's lifecycle, as QMP's events."""
        if event == "SHUTDOWN":
            stop = data.get("stop")
            if stop == "poweroff":
                self.emit("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
            else:
                cause = self.control.shutdown_cause or {
                    "shutdown": "host-ui", "crash": "guest-panic", "timeout": "host-error",
                    "max-instructions": "host-error", "idle": "guest-panic",
                    "nomem": "host-error"}.get(stop, "host-error")
                self.emit("SHUTDOWN", {"guest": False, "reason": cause})
        elif event == "RESET":
            guest = bool(data.get("guest"))
            self.emit("RESET", {"guest": guest, "reason": "guest-reset" if guest
                                else "host-qmp-system-reset"})
        elif event in ("STOP", "RESUME", "POWERDOWN"):
            self.emit(event)

    def close(self) -> None:
        self._closed = True
        try:
            self.control.vm.listeners.remove(self.vm_event)
        except ValueError:
            pass
        close_listener(self.listener, self.endpoint)
        with self._lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.flush_and_close()


# ---- live migration and snapshots: the handlers of hvemu/migration.py ----
def _register_migration() -> None:
    from ..errors import HvemuError
    from ..migration import QMP_COMMANDS
    for name, fn in QMP_COMMANDS.items():
        def handler(session, _fn=fn, **args):
            try:
                return _fn(session.control.vm, **args)
            except HvemuError as e:
                raise QmpError(str(e)) from None
        handler.parameters = fn.parameters
        COMMANDS[name] = handler


_register_migration()
