"""What `hvemu boot` attaches to a VM for --qmp, -S and the console's monitor."""
from __future__ import annotations

from .endpoint import parse_endpoint
from .vmcontrol import VmControl


class Controls:
    """The servers attached to one VM; `close()` when its run is over."""

    def __init__(self, vm):
        self.vm = vm
        self.control = VmControl(vm)
        self.servers: list = []
        self.recorder = None
        self.replayer = None

    def start(self) -> None:
        """Start serving (the servers' threads), in the process that runs the VM."""
        for server in self.servers:
            server.start()

    def close(self, outcome=None) -> None:
        """Close the servers; finish a recording (outcome None: the run was interrupted)
        and check a replay against its recording (Diverged if it differs)."""
        for s in self.servers:
            s.close()
        self.servers.clear()
        if self.recorder is not None:
            self.recorder.finish(outcome)
            self.recorder = None
        if self.replayer is not None and outcome is not None:
            replayer, self.replayer = self.replayer, None
            replayer.finish(outcome)


def attach(vm, console=None, qmp=(), gdb: str | None = None, hold: bool = False,
           record: str | None = None, replay: str | None = None,
           start: bool = True) -> Controls:
    """Listen on every --qmp endpoint and the --gdb one (one `hvemu:` line if one cannot
    be had), give a terminal console its monitor (Ctrl-A c) and, with -S (hold), keep the
    VM stopped before its first instruction until a client says cont (or gdb continue).
    start=False: the sockets listen, but serving waits for `Controls.start()` (a hosted
    hypervisor calls it in its own process, where the VM's devices and run loop are)."""
    from .monitor import Monitor
    from .qmp import QmpServer

    controls = Controls(vm)
    if record is not None or replay is not None:
        from .replay import Recorder, Replayer, check_paths
        check_paths(record, replay)
        if replay is not None:
            controls.replayer = Replayer(vm, replay)
    endpoints = [parse_endpoint(spec, "--qmp") for spec in qmp]
    gdb_endpoint = (parse_endpoint(gdb, "--gdb", wait_default=False, need_server=False)
                    if gdb is not None else None)
    try:
        for ep in endpoints:
            controls.servers.append(QmpServer(controls.control, ep))
        if gdb_endpoint is not None:
            from .gdbstub import GdbStub
            controls.servers.append(GdbStub(controls.control, gdb_endpoint))
    except BaseException:
        controls.close()
        raise
    if console is not None and hasattr(console, "monitor"):
        console.monitor = Monitor(vm, controls.control)
    if record is not None:
        controls.recorder = Recorder(vm, record)     # last: the hooks see every server's
        controls.control.recording = True            # no debugger writes: not replayable
    if hold:
        controls.control.hold()
    if start:
        controls.start()
    return controls
