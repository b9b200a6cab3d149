"""Record and replay: `--record FILE` logs every input of a run that is not a function of
its configuration, `--replay FILE` runs it again from them, identically.

A run is deterministic given its inputs: virtual time counts instructions and the
scheduler's quanta are fixed.  What is not is logged, as JSON lines:

* the header: what identifies the run -- each image's, the initrd's and each disk's
  SHA-256 (over the byte range the VM sees), and the configuration (memory, vCPUs,
  clock, append, limits); the RTC's offset from the host's wall clock;
* every byte of console input, with the point at which the guest received it: its
  instruction count and virtual time (with the host clock: the index of the poll, which
  the replayed clock makes deterministic), and when input can no longer come (EOF);
* every quantum: which vCPU ran, the instruction count at which it ended, and how
  (time up, WFI, a pause, a stop).  A pause (Ctrl-A p, QMP stop, a debugger) or a host
  request (reset, quit, --timeout, Ctrl-A x) ends a quantum where the host decided, so
  the replay ends it at the same instruction, and does what the host did;
* under `--clock host`, every reading of the host clock and every estimate of where
  the next deadline falls, in order;
* a trailer: how the run ended, its instruction count, its console output's length
  and SHA-256, and a SHA-256 of the final state (registers, CSRs, RAM).  A file without
  it is truncated, and refused.

A replay may itself be paused or debugged (QMP stop, gdb breakpoints and steps): its
quanta go on where they stopped.  The replay refuses a recording of another image or
configuration, or disks whose content differs (restore them as they were when the
recording began), each with one `hvemu:` line; at the end it checks the trailer: a
replay that does not give the same instructions, output and final state says so (exit 70)."""
from __future__ import annotations

import hashlib
import json
import os

from ..errors import CantCreateError, HvemuError, InternalError, NoInputError, UsageError
from ..hypervisor.vcpu import Stop

MAGIC = "hvemu-replay"
VERSION = 1
HOST_STOPS = {"shutdown", "timeout"}          # stops the host decides (reset: if requested)


class ReplayError(HvemuError):
    """A replay file that cannot be used (truncated, another image, differing disks)."""


class Diverged(InternalError):
    """The replay did not follow the recording."""


def file_digest(path: str, offset: int = 0, size: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def identity(vm) -> dict:
    """What a replay must match: images, configuration, disks."""
    cfg = vm.config
    images = {}
    for key in ("image", "kernel", "initrd"):
        path = getattr(cfg, key)
        if path is not None:
            images[key] = file_digest(path)
    disks = [{"sha256": file_digest(d.path, d.offset, d.size), "size": d.size,
              "readonly": d.readonly, "path": d.path} for d in vm.disks]
    config = {"memory": cfg.memory, "vcpus": cfg.vcpus, "clock": cfg.clock,
              "append": cfg.append, "max_instructions": cfg.max_instructions}
    return {"images": images, "config": config, "disks": disks}


def state_digest(vm) -> str:
    """SHA-256 of the final machine state: each hart's registers, pc, instret, privilege
    and CSRs, and the content of every RAM page that has a frame."""
    h = hashlib.sha256()
    for vc in vm.vcpus:
        v = vc.vcpu
        regs = [v.pc, v.instret, vc.hart.priv, v.fflags, v.frm, *v.x, *v.f]
        h.update(b"".join((r & ((1 << 64) - 1)).to_bytes(8, "little") for r in regs))
        csrs = vc.hart.csr.snapshot()
        csrs.pop("time", None)          # a clock reading, not state (and an input under
        h.update(json.dumps(csrs, sort_keys=True).encode())      # --clock host)
    for addr in vm.memory.touched():
        h.update(addr.to_bytes(8, "little"))
        h.update(vm.memory.read(addr, 4096))
    return h.hexdigest()


def output_digest(console) -> dict:
    return {"length": console.position, "sha256": hashlib.sha256(console.output_bytes).hexdigest(),
            "kept_from": console.dropped}


class Recorder:
    def __init__(self, vm, path: str):
        self.vm = vm
        self.path = path
        try:
            self.f = open(path, "w")
        except OSError as e:
            raise CantCreateError(f"--record {path}: cannot write ({e.strerror})") from None
        self.polls = 0
        self.receiving = None
        self.in_quantum = False
        head = {"magic": MAGIC, "version": VERSION, **identity(vm),
                "rtc_offset_ns": vm.rtc.offset_ns}
        self._write(head)
        self._hook()

    def _write(self, obj) -> None:
        try:
            self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        except OSError as e:
            raise CantCreateError(f"--record {self.path}: cannot write ({e.strerror})") \
                from None

    def key(self, ahead: int = 0) -> list:
        """Where the guest is: its instructions and virtual time; with the host clock the
        poll's index instead of the time (reading the clock would be an input itself).
        ahead=1: the key the next poll will have (a request served at a round's start)."""
        vm = self.vm
        if vm.clock.realtime:
            return [self.polls + ahead, vm.instructions]
        return [vm.instructions, vm.clock.now()]

    def _hook(self) -> None:
        vm = self.vm
        console = vm.console
        poll, receive = console.poll, console.receive

        def recording_receive(data: bytes) -> None:
            self._write(["i", self.key(), data.hex()])
            receive(data)

        def recording_poll() -> None:
            self.polls += 1
            poll()
            can = console.can_receive()
            if can != self.receiving:
                self.receiving = can
                self._write(["r", self.key(), can])
        console.receive = recording_receive
        console.poll = recording_poll
        control = vm.control
        serve = control.serve_request

        def recording_serve() -> None:
            # a host request served at a round's start (one a running vCPU serves ends
            # its quantum, and the quantum's entry says so)
            if control.request in ("shutdown", "timeout", "reset") and not self.in_quantum:
                self._write(["x", self.key(ahead=1), control.request])
            serve()
        control.serve_request = recording_serve
        for vc in vm.vcpus:
            vc.run_quantum = self._recording_quantum(vc, vc.run_quantum)
        clock = vm.clock
        if clock.realtime:
            now, instret_at = clock.now, clock.instret_at

            nested = [False]

            def recording_now() -> int:
                t = now()
                if not nested[0]:
                    self._write(["c", t])
                return t

            def recording_instret_at(t: int) -> int:
                nested[0] = True                  # its own reading is part of its answer
                try:
                    n = instret_at(t)
                finally:
                    nested[0] = False
                self._write(["a", n])
                return n
            clock.now = recording_now
            clock.instret_at = recording_instret_at

    def _recording_quantum(self, vc, run_quantum):
        def run(quantum: int) -> bool:
            self.in_quantum = True
            try:
                waiting = run_quantum(quantum)
            except Stop as stop:
                self._write(["q", vc.hartid, vc.vcpu.instret, "stop", stop.reason, stop.detail])
                raise
            except BaseException:
                self._write(["q", vc.hartid, vc.vcpu.instret, "stop", "interrupted", ""])
                raise
            finally:
                self.in_quantum = False
            self._write(["q", vc.hartid, vc.vcpu.instret, "wait" if waiting else "end"])
            return waiting
        return run

    def finish(self, outcome) -> None:
        self._write({"end": outcome.reason if outcome is not None else "interrupted",
                     "instructions": self.vm.instructions,
                     "output": output_digest(self.vm.console),
                     "state": state_digest(self.vm)})
        self.close()

    def close(self) -> None:
        if not self.f.closed:
            try:
                self.f.close()
            except OSError as e:
                raise CantCreateError(f"--record {self.path}: cannot write "
                                      f"({e.strerror})") from None


def load(path: str) -> tuple[dict, list, dict]:
    """(header, events, trailer) of a recording; ReplayError if it is not one."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise NoInputError(f"--replay {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NoInputError(f"--replay {path}: cannot read ({getattr(e, 'strerror', e)})") \
            from None
    try:
        head = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("magic") != MAGIC:
        raise ReplayError(f"--replay {path}: not an hvemu recording")
    if head.get("version") != VERSION:
        raise ReplayError(f"--replay {path}: a recording of format {head.get('version')}, "
                          f"this hvemu reads {VERSION}")
    events = []
    trailer = None
    for n, line in enumerate(lines[1:], 2):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ReplayError(f"--replay {path}: line {n} is damaged (the file is truncated "
                              "or was changed)") from None
        if isinstance(obj, dict) and "end" in obj:
            trailer = obj
            if n != len(lines):
                raise ReplayError(f"--replay {path}: data after the end of the recording")
            break
        events.append(obj)
    if trailer is None:
        raise ReplayError(f"--replay {path}: the recording is truncated (it has no end: was "
                          "hvemu killed while recording?)")
    return head, events, trailer


class Replayer:
    def __init__(self, vm, path: str):
        self.vm = vm
        self.path = path
        head, events, self.trailer = load(path)
        self._check(head, identity(vm))
        vm.rtc.offset_ns = head["rtc_offset_ns"]
        self.inputs = [e for e in events if e[0] in ("i", "r", "x")]
        self.quanta = [e for e in events if e[0] == "q"]
        self.readings = [e for e in events if e[0] in ("c", "a")]
        self.polls = 0
        self.receiving = True
        self._hook()

    def _check(self, head: dict, mine: dict) -> None:
        p = self.path
        if head["images"] != mine["images"]:
            which = sorted(set(head["images"]) ^ set(mine["images"])) or [
                k for k in head["images"] if head["images"][k] != mine["images"].get(k)]
            raise ReplayError(f"--replay {p}: the recording belongs to another image "
                              f"({', '.join(which)} differs)")
        for key, value in head["config"].items():
            if mine["config"].get(key) != value:
                raise ReplayError(f"--replay {p}: recorded with {key} = {value!r}, "
                                  f"not {mine['config'].get(key)!r}: give the same options")
        if len(head["disks"]) != len(mine["disks"]):
            raise ReplayError(f"--replay {p}: recorded with {len(head['disks'])} disks, "
                              f"not {len(mine['disks'])}")
        for i, (was, now) in enumerate(zip(head["disks"], mine["disks"], strict=True)):
            if (was["sha256"], was["size"]) != (now["sha256"], now["size"]):
                raise ReplayError(f"--replay {p}: disk {i} ({now['path']}) differs from the "
                                  f"one recorded (sha256 {was['sha256'][:16]}…, now "
                                  f"{now['sha256'][:16]}…): give it as it was when the "
                                  "recording began")

    def key(self) -> list:
        vm = self.vm
        if vm.clock.realtime:
            return [self.polls, vm.instructions]
        return [vm.instructions, vm.clock.now()]

    def _hook(self) -> None:
        vm = self.vm
        console = vm.console
        console.stdin_fd = None                    # the recording is the only input
        receive = console.receive
        poll = console.poll

        def replaying_poll() -> None:
            self.polls += 1
            poll()
            key = self.key()
            while self.inputs and self.inputs[0][1] == key:
                kind, _, value = self.inputs.pop(0)
                if kind == "i":
                    receive(bytes.fromhex(value))
                elif kind == "r":
                    self.receiving = value
                else:                              # a host request at a round's start
                    raise Stop(value, "requested" if value == "reset" else "")
            if self.inputs and self.inputs[0][1] < key:
                raise Diverged(f"--replay {self.path}: the replay diverged: input recorded "
                               f"at {self.inputs[0][1]} was not reached (now {key})")
            if not self.inputs and not self.quanta:
                self.receiving = False             # the recording has nothing more
                vm.control.ask("shutdown")

        console.poll = replaying_poll
        console.can_receive = lambda: self.receiving
        console.wait_input = lambda deadline, limit=0.05: None    # nothing comes from outside
        for vc in vm.vcpus:
            vc.run_quantum = self._replaying_quantum(vc, vc.run_quantum)
        clock = vm.clock
        if clock.realtime:
            clock.now = lambda: self._reading("c")
            clock.instret_at = lambda t: self._reading("a")

    def _reading(self, kind: str) -> int:
        if not self.readings or self.readings[0][0] != kind:
            raise Diverged(f"--replay {self.path}: the replay diverged: a host clock "
                           f"reading ({kind}) the recording does not have")
        return self.readings.pop(0)[1]

    def _replaying_quantum(self, vc, run_quantum):
        def run(quantum: int) -> bool:
            if not self.quanta:
                raise Stop("shutdown", "the recording ends here")
            entry = self.quanta[0]
            hart, end, how = entry[1], entry[2], entry[3]
            if hart != vc.hartid or end < vc.vcpu.instret:
                raise Diverged(f"--replay {self.path}: the replay diverged: hart {vc.hartid} "
                               f"at {vc.vcpu.instret}, the recording has hart {hart} to {end}")
            self.quanta.pop(0)
            host_stop = how == "stop" and (entry[4] in HOST_STOPS or entry[5] == "requested"
                                           or entry[4] == "interrupted")
            # a stop the guest caused comes from the instruction at `end` itself: let it run
            natural_stop = how == "stop" and not host_stop
            try:
                waiting = run_quantum(end - vc.vcpu.instret + natural_stop)
            except Stop as stop:
                if how != "stop" or stop.reason != entry[4] or vc.vcpu.instret != end:
                    raise Diverged(f"--replay {self.path}: the replay diverged: it stopped "
                                   f"({stop.reason}) at {vc.vcpu.instret}, the recording "
                                   f"{how} at {end}") from None
                raise
            control = self.vm.control
            if vc.vcpu.instret < end and (control.paused or control.request == "pause"):
                self.quanta.insert(0, entry)       # the replay itself was paused (QMP, a
                return False                       # debugger): the quantum goes on later
            if vc.vcpu.instret != end:
                raise Diverged(f"--replay {self.path}: the replay diverged: hart "
                               f"{vc.hartid}'s quantum ended at {vc.vcpu.instret}, the "
                               f"recording's at {end}")
            if natural_stop:
                raise Diverged(f"--replay {self.path}: the replay diverged: the recording "
                               f"stopped ({entry[4]}) at {end}, the replay did not")
            if how == "stop":
                reason, detail = entry[4], entry[5]
                if reason == "interrupted":
                    raise Stop("shutdown", "the recording was interrupted here")
                raise Stop(reason, detail)
            if waiting != (how == "wait"):
                raise Diverged(f"--replay {self.path}: the replay diverged: hart "
                               f"{vc.hartid} {'waits' if waiting else 'runs'} at {end}")
            return waiting
        return run

    def finish(self, outcome) -> None:
        """Check the replay against the recording's trailer."""
        t = self.trailer
        mine = output_digest(self.vm.console)
        if self.vm.instructions != t["instructions"] or mine != t["output"]:
            raise Diverged(f"--replay {self.path}: the replay diverged: "
                           f"{self.vm.instructions:,} instructions and "
                           f"{mine['length']:,} bytes of output, the recording "
                           f"{t['instructions']:,} and {t['output']['length']:,}")
        if state_digest(self.vm) != t["state"]:
            raise Diverged(f"--replay {self.path}: the replay diverged: the same output and "
                           "instructions, but the final registers, CSRs or memory differ")


def check_paths(record: str | None, replay: str | None) -> None:
    if record and replay:
        raise UsageError("give --record or --replay, not both")
    if replay and not os.path.exists(replay):
        raise NoInputError(f"--replay {replay}: no such file")
