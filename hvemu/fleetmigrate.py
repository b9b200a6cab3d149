"""`hvemu fleet migrate`: a VM running in a Ray actor moves, live, to an actor on another
node, over hvemu's own migration stream (hvemu/migration.py), and on again.

    hvemu fleet migrate IMAGE | --kernel K [boot options] [--after S] [--hops N]
                        [--downtime-limit MS] [--address HOST:PORT | --workers N]

Each VM lives in a `VmActor`: an actor (a worker process of its own) that places the
guest's files -- shipped through Ray's object store, so nodes need no shared file system
-- and runs the VM in a thread.  Every `--after` seconds of host time the driver starts
a second actor on another node (the next alive node after the source's, in node-id
order; on a one-node cluster another worker process of the same node), which listens on
its node's IP address as `hvemu boot --incoming` does, and asks the source actor to
`vm.migrate()` there: pre-copy with dirty logging, then the final stop.  When the target
answered `done`, the source VM is shut down and its actor ended, and the target's VM runs
on; `--hops N` moves it N times.  A writable disk goes with the VM (QMP migrate's
`blk`): each actor has its own copy of it.

stdout gets the guest's console as `hvemu boot` prints it, the source's output and then
the target's, streamed as the guest prints.  stderr gets a line per move and, at the
end, a table of the moves (from and to which node and worker, status, downtime, total
time, data sent, rounds).  `--json PATH` writes the moves and the guest's result, with
the SHA-256 of each of its disks as the guest left it on the last node ("disks").

The exit status is the guest's, as `hvemu boot` gives it (the instructions in the table
are the guest's since it booted, on all the nodes it ran on).  When a move fails (the
target refused the stream, the connection broke), the guest runs on on its source,
having lost nothing, no more moves are tried, and the status is 75 (EX_TEMPFAIL) if
the guest's own was 0.  A guest that ends before a move was due is not moved.  An actor
whose process dies is reported as lost (70); one that does not answer its VM's timeout
plus 30 s after is killed (hung, 124).
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time

from .errors import EX_SOFTWARE, EX_TEMPFAIL, HvemuError
from .fleet import (
    DEFAULT_GRACE,
    EXIT_HUNG,
    EXIT_LOST,
    Guest,
    _place,
    _read,
    _sweep,
    outcome_dict,
    unlocal,
    vm_config,
)

POLL = 0.1                      # seconds between console reads while the guest runs


class VmActor:
    """One VM in a Ray actor: booted here (`boot`) or brought here by a migration
    (`incoming`), run in a thread, moved away (`migrate`).  Its methods run in threads
    of their own (a threaded actor), so the console can be read while the VM runs."""

    def __init__(self):
        import ray
        _sweep()
        self.tmp = tempfile.mkdtemp(prefix=f"hvemu-fleet-{os.getpid()}-vm-")
        self.vm = None
        self.console = None
        self.local: dict = {}
        self.outcome: dict | None = None
        self.ended = threading.Event()
        self.place = {"node": ray.get_runtime_context().get_node_id(),
                      "ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                      "pid": os.getpid()}

    def where(self) -> dict:
        return self.place

    def _make(self, payload: dict, blobs: tuple, timeout: float | None) -> dict | None:
        """Build the VM; a refusal (a bad image, ...) as the outcome dict, else None."""
        from .console import Console
        from .vm import VM
        self.local = _place(self.tmp, payload, blobs)
        self.console = Console()
        try:
            self.vm = VM(vm_config(payload, self.local, timeout), self.console)
        except HvemuError as e:
            return self._end({"result": "refused", "exit_code": e.exit_code,
                              "detail": unlocal(str(e), self.local)})
        return None

    def _end(self, outcome: dict) -> dict:
        self.outcome = outcome
        self.ended.set()
        return outcome

    def _run(self) -> None:
        try:
            out = self.vm.run()
            self._end({**outcome_dict(out, self.console, self.local),
                       "disks": [_digest(d.path) for d in self.vm.config.disks]})
        except Exception as e:                   # a bug in hvemu: reported, not raised
            self._end({"result": "error", "exit_code": EX_SOFTWARE,
                       "detail": f"{type(e).__name__}: {e}"})

    def boot(self, payload: dict, *blobs: bytes) -> dict:
        """Boot the guest and run it in a thread; where this actor is, or the refusal."""
        refused = self._make(payload, blobs, None)
        if refused is not None:
            return refused
        threading.Thread(target=self._run, name="hvemu-vm", daemon=True).start()
        return self.place

    def incoming(self, payload: dict, timeout: float | None, *blobs: bytes) -> dict:
        """Wait for a migration (on this node's IP address, a port the host picks), then
        run the VM it brings; returns {"uri": ...} (or the refusal) once listening."""
        from . import migration
        refused = self._make(payload, blobs, timeout)
        if refused is not None:
            return refused
        server = socket.create_server((self.place["ip"], 0))
        uri = f"tcp:{self.place['ip']}:{server.getsockname()[1]}"

        def body():
            try:
                migration.receive(self.vm, uri, server=server)
            except HvemuError as e:              # a refused stream: this VM never runs
                self._end({"result": "refused", "exit_code": e.exit_code,
                           "detail": str(e)})
                return
            self._run()
        threading.Thread(target=body, name="hvemu-incoming", daemon=True).start()
        return {"uri": uri}

    def migrate(self, uri: str, params: dict, blk: bool) -> dict:
        """Live-migrate the VM to uri; query-migrate's answer at the end.  Once the
        target has it, this VM is shut down (its outcome says how far it got)."""
        try:
            m = self.vm.migrate(uri, blk=blk, **params)
        except HvemuError as e:
            return {"status": "failed", "error-desc": str(e)}
        info = m.wait()
        if info["status"] == "completed":
            self.vm.shutdown()
            self.ended.wait(30)
        return info

    def console_since(self, position: int) -> tuple[int, bytes]:
        """The console output from absolute position on, and where it ends now."""
        if self.console is None:
            return position, b""
        end = self.console.position
        return end, self.console.output_since(position)[:end - position]

    def result(self, timeout: float | None = None) -> dict | None:
        """The VM's outcome once it ended (None if it runs on after timeout seconds);
        the console is read apart, with console_since."""
        if not self.ended.wait(timeout):
            return None
        return {k: v for k, v in self.outcome.items() if k != "console"}

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _digest(path: str) -> str:
    """The SHA-256 of a disk's file as the guest left it (the VM has closed it)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def payload_of(guest: Guest, vcpus: int, memory: int, timeout: float) -> dict:
    """The task payload of fleet.py (the same shape `fleet run` ships) for one guest."""
    from .fleet import Cell, _payload
    return _payload(Cell(0, guest, vcpus, memory, "fast", timeout), 0, "hvemu")


class Mover:
    """Drives one guest through its moves (the driver's side): starts actors, streams
    the console to `out`, migrates, and collects the figures."""

    def __init__(self, fleet, payload: dict, out=None, on_hop=None,
                 grace: float = DEFAULT_GRACE):
        self.ray = fleet.ray
        self.payload = payload
        self.target_payload = payload             # what each target builds (tests vary it)
        self.out = out if out is not None else sys.stdout.buffer
        self.on_hop = on_hop
        self.grace = grace
        self.refs = [self.ray.put(_read(p)) for p in payload["files"]]
        slots = fleet.slots
        # a source and its target live at once: each takes half a CPU on a 1-CPU cluster
        self.actor_class = self.ray.remote(num_cpus=min(1.0, slots / 2), max_restarts=0,
                                           max_concurrency=4)(VmActor)
        self.hops: list[dict] = []
        self.position = 0
        self.actor = None
        self.place: dict | None = None

    # ---- actors ----
    def _spawn(self, node: str | None):
        options = {}
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return self.actor_class.options(**options).remote()

    def _kill(self, actor) -> None:
        try:
            self.ray.get(actor.close.remote(), timeout=10)
        except Exception:                        # lost already, or hung: kill it anyway
            pass
        self.ray.kill(actor, no_restart=True)

    def next_node(self, current: str) -> str | None:
        """The next alive node with CPUs after current (in node-id order), None when
        this cluster has no other."""
        nodes = sorted(n["NodeID"] for n in self.ray.nodes()
                       if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
        others = [n for n in nodes if n != current]
        if not others:
            return None
        later = [n for n in others if n > current]
        return (later or others)[0]

    # ---- the console ----
    def _drain(self, actor) -> None:
        self.position, data = self.ray.get(actor.console_since.remote(self.position),
                                           timeout=30)
        if data:
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass

    def _run_until(self, deadline: float | None) -> dict | None:
        """Stream the console until the guest ended (its outcome) or until deadline."""
        while True:
            wait = POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic()))
            ended = self.ray.get(self.actor.result.remote(wait), timeout=wait + 30)
            self._drain(self.actor)
            if ended is not None or (deadline is not None and time.monotonic() >= deadline):
                return ended

    # ---- the whole run ----
    def run(self, after: float, hops: int, params: dict) -> dict:
        exceptions = self.ray.exceptions
        started = time.monotonic()
        timeout = self.payload["timeout"]
        try:
            # Both workers start before the guest boots, and each next one as soon as a
            # move is done: a worker's start-up (most of a second) is not added to the
            # --after between two moves (nor taken from a short guest's run).
            self.actor = self._spawn(None)
            self.place = self.ray.get(self.actor.where.remote())
            target = self._spawn(self.next_node(self.place["node"])) if hops else None
            if target is not None:
                self.ray.get(target.where.remote())
            booted = self.ray.get(self.actor.boot.remote(self.payload, *self.refs))
            if "result" in booted:                             # refused
                if target is not None:
                    self._kill(target)
                return self._finish(booted, started)
            deadline = started + timeout + self.grace       # past it, the actor is hung
            outcome = None
            for hop in range(hops):
                due = time.monotonic() + after
                if target is None:
                    target = self._spawn(self.next_node(self.place["node"]))
                    target.where.remote()
                outcome = self._run_until(due)
                if outcome is not None:
                    self._kill(target)
                    break
                moved = self._move(target, hop, timeout - (time.monotonic() - started),
                                   params)
                target = None
                if not moved:
                    break
            if outcome is None:
                outcome = self._run_until(deadline)
            if outcome is None:                                # no answer: hung
                outcome = {"result": "hung", "exit_code": EXIT_HUNG,
                           "detail": f"no answer {timeout + self.grace:g} s after it started "
                                     "(its timeout plus the grace): its actor was killed"}
            return self._finish(outcome, started)
        except (exceptions.RayActorError, exceptions.ActorDiedError) as e:
            return self._finish({"result": "lost", "exit_code": EXIT_LOST,
                                 "detail": f"the worker process died under the guest "
                                           f"({type(e).__name__})"}, started)
        except exceptions.GetTimeoutError:
            return self._finish({"result": "hung", "exit_code": EXIT_HUNG,
                                 "detail": "its actor stopped answering and was killed"},
                                started)
        finally:
            if self.actor is not None:
                self._kill(self.actor)

    def _move(self, target, hop: int, timeout_left: float, params: dict) -> bool:
        """One move of the running guest to the target actor; whether it moved."""
        blk = any(not d["readonly"] for d in self.payload["disks"])
        begun = time.monotonic()
        try:
            listening = self.ray.get(target.incoming.remote(
                self.target_payload, max(timeout_left, 0.001), *self.refs), timeout=120)
            tplace = self.ray.get(target.where.remote(), timeout=30)
            info = self.ray.get(self.actor.migrate.remote(listening["uri"], params, blk))
        except BaseException:
            self._kill(target)
            raise
        record = {"hop": hop + 1, "from": self.place, "to": tplace, "status": info["status"],
                  "downtime_ms": (info["x-downtime-exact"] * 1000
                                  if info.get("x-downtime-exact") is not None else None),
                  "total_ms": info.get("total-time"),
                  "setup_ms": info.get("setup-time"),
                  "bytes": info["ram"]["transferred"] if "ram" in info else 0,
                  "rounds": info["ram"]["dirty-sync-count"] if "ram" in info else 0,
                  "error": info.get("error-desc"),
                  "wall": time.monotonic() - begun}
        if info["status"] != "completed":
            ended = self.ray.get(self.actor.result.remote(0), timeout=30)
            self._kill(target)
            if ended is not None:                 # the guest ended first: nothing to move
                return False
            self.hops.append(record)
            if self.on_hop:
                self.on_hop(record)
            return False
        gone = self.ray.get(self.actor.result.remote(30), timeout=60)
        self._drain(self.actor)                    # the last of the source's output
        record["instructions"] = gone["instructions"] if gone else None
        self.hops.append(record)
        if self.on_hop:
            self.on_hop(record)
        self._kill(self.actor)
        self.actor, self.place, self.position = target, tplace, 0
        return True

    def _finish(self, outcome: dict, started: float) -> dict:
        failed = any(h["status"] != "completed" for h in self.hops)
        code = outcome.get("exit_code", 0)
        if failed and code == 0:
            code = EX_TEMPFAIL
        return {**outcome, "exit_code": code, "hops": self.hops,
                "moved": sum(h["status"] == "completed" for h in self.hops),
                "node": self.place, "wall": time.monotonic() - started}


def hop_line(h: dict) -> str:
    """One line for a move, as stderr shows it as it happens."""
    src, dst = h["from"], h["to"]
    where = (f"node {src['node'][:8]} pid {src['pid']} -> node {dst['node'][:8]} "
             f"pid {dst['pid']}")
    if h["status"] != "completed":
        return f"move {h['hop']}: {where}: {h['status']}: {h['error']}"
    return (f"move {h['hop']}: {where}: downtime {h['downtime_ms']:.1f} ms, total "
            f"{h['total_ms']} ms, {h['bytes'] / 2**20:.1f} MiB in {h['rounds']} rounds, "
            f"at instruction {h['instructions']:,}")


def table(result: dict, title: str):
    from rich.table import Table
    t = Table(title=title)
    for col in ("move", "from node", "pid", "to node", "pid ", "status", "downtime ms",
                "total ms", "MiB sent", "rounds", "at instruction"):
        t.add_column(col, justify="left" if "node" in col or col == "status" else "right")
    for h in result["hops"]:
        ok = h["status"] == "completed"
        t.add_row(str(h["hop"]), h["from"]["node"][:12], str(h["from"]["pid"]),
                  h["to"]["node"][:12], str(h["to"]["pid"]),
                  h["status"] if ok else f"[red]{h['status']}",
                  f"{h['downtime_ms']:.1f}" if ok else "-",
                  str(h["total_ms"]) if h["total_ms"] is not None else "-",
                  f"{h['bytes'] / 2**20:.1f}", str(h["rounds"]),
                  f"{h['instructions']:,}" if h.get("instructions") else "-")
    return t
