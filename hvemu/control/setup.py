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


def attach(vm, console=None, qmp=(), hold: bool = False) -> Controls:
    """Listen on every --qmp endpoint (one `hvemu:` line if one cannot be had), give a
    terminal console its monitor (Ctrl-A c) and, with -S (hold), keep the VM stopped
    before its first instruction until a client says cont."""
    from .monitor import Monitor
    from .qmp import QmpServer

    controls = Controls(vm)
    endpoints = [parse_endpoint(spec, "--qmp") for spec in qmp]
    try:
        for ep in endpoints:
            controls.servers.append(QmpServer(controls.control, ep))
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
