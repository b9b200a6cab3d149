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

    def close(self) -> None:
        for s in self.servers:
            s.close()
        self.servers.clear()


def attach(vm, console=None, qmp=(), gdb: str | None = None, hold: bool = False) -> Controls:
    """Listen on every --qmp endpoint and the --gdb one (one `hvemu:` line if one cannot
    be had), give a terminal console its monitor (Ctrl-A c) and, with -S (hold), keep the
    VM stopped before its first instruction until a client says cont (or gdb continue)."""
    from .monitor import Monitor
    from .qmp import QmpServer

    controls = Controls(vm)
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
    if hold:
        controls.control.hold()
    for server in controls.servers:
        server.start()
    return controls
