"""Driving and debugging a running VM from outside: QMP (qmp.py, with the human monitor
of monitor.py), the gdb remote stub (gdbstub.py) and record/replay (replay.py).

All of them act on a VM from their own threads through what the VM offers any thread:
`VM.pause()/resume()/reset()/shutdown()`, `VM.listeners` for its lifecycle events, and
its vCPUs' state, read while the VM is stopped (or, for a running VM, a snapshot that may
be a few instructions old, as QEMU's monitor gives)."""
