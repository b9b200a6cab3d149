"""What QMP, the human monitor, the console and the gdb stub do to a VM, in one place,
so that they agree: stop and cont (waiting until the scheduler has stopped the VM),
reset, power-down, quit, the status QMP reports and hvemu's figures."""
from __future__ import annotations

import threading
import time

STOP_WAIT = 5.0            # seconds `stop` waits for the scheduler to stop the VM


class VmControl:
    def __init__(self, vm):
        self.vm = vm
        self.thread_id = threading.get_native_id()     # the scheduler's host thread
        self.prelaunch = False          # -S: stopped before the first instruction
        self.debug_stop = False         # stopped by the gdb stub (status "debug")
        self.shutdown_cause = None      # why the host shut the VM down (QMP's SHUTDOWN)
        self.recording = False          # --record: debuggers may not write registers/memory

    # ---- state ----
    def stopped(self) -> bool:
        c = self.vm.control
        return c.paused or c.request == "pause"

    def status(self) -> str:
        """QMP's RunState: running, paused, prelaunch, debug or shutdown."""
        if self.vm.state == "shutdown":
            return "shutdown"
        if self.stopped():
            if self.prelaunch:
                return "prelaunch"
            return "debug" if self.debug_stop else "paused"
        return "running"

    def hold(self) -> None:
        """-S: the VM does not run its first instruction until cont (QMP) or continue (gdb)."""
        c = self.vm.control
        c.paused = True
        c._resumed.clear()
        self.prelaunch = True

    # ---- actions ----
    def stop(self, wait: bool = True) -> None:
        vm = self.vm
        if vm.state == "shutdown" or self.stopped():
            return
        vm.pause()
        if wait and threading.get_native_id() != self.thread_id:
            end = time.monotonic() + STOP_WAIT
            while not vm.control.paused and vm.state != "shutdown" and time.monotonic() < end:
                time.sleep(0.001)

    def cont(self) -> None:
        self.prelaunch = False
        self.debug_stop = False
        if self.vm.state != "shutdown":
            self.vm.resume()

    def system_reset(self) -> None:
        self.vm.request("reset")

    def system_powerdown(self) -> None:
        """hvemu's board has no power button a guest could see: announce POWERDOWN, then
        power the VM off (disks flushed)."""
        self.vm.notify("POWERDOWN")
        self.shutdown_cause = "host-qmp-system-powerdown"
        self.vm.shutdown()

    def quit(self) -> None:
        self.shutdown_cause = "host-qmp-quit"
        self.vm.shutdown()

    def stats(self) -> dict:
        return self.vm.live_stats().to_dict()
