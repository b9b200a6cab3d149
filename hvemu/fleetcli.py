"""The `hvemu fleet` commands (hvemu/fleet.py does the work; cli.py loads this module
when `fleet` is asked for)."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import click

from .cli import COUNT, MEMORY, SECONDS, VCPUS, Parsed, QemuCommand
from .errors import CantCreateError, UsageError
from .fleet import DEFAULT_TIMEOUT, ENGINES
from .units import parse_count

WORKERS = Parsed("workers", lambda text: parse_count(text, "number of workers", 1, 1024))
REPEAT = Parsed("count", lambda text: parse_count(text, "repeat count", 1, 1000))


@click.group("fleet")
def fleet_group() -> None:
    """Run a matrix of guests as Ray tasks, locally or on a cluster (hvemu/fleet.py)."""


@fleet_group.command("run", cls=QemuCommand)
@click.argument("targets", nargs=-1, required=True, metavar="SPEC.toml | IMAGE...")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="join this Ray cluster (ray start --head prints it); default: start a "
                   "local Ray instance and stop it at the end")
@click.option("--workers", type=WORKERS, default=None,
              help="CPUs of the local Ray instance (default: this machine's)")
@click.option("--repeat", type=REPEAT, default=None,
              help="runs of every guest: the table gives medians and spreads (default 1)")
@click.option("--qemu", is_flag=True, default=None,
              help="also time each guest on qemu-system-riscv64, side by side")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="write every cell's and run's figures as JSON to this file")
@click.option("--timeout", type=SECONDS, default=None,
              help=f"seconds of host time per guest (default {DEFAULT_TIMEOUT:g}; exit 124)")
@click.option("--vcpus", type=VCPUS, multiple=True,
              help="an axis: harts per guest (repeatable: each value is a configuration)")
@click.option("--memory", "-m", type=MEMORY, multiple=True,
              help="an axis: guest RAM (repeatable)")
@click.option("--engine", type=click.Choice(ENGINES), multiple=True,
              help="an axis: the fast path or the reference interpreter (repeatable)")
@click.option("--reference", is_flag=True, help="the same as --engine reference")
@click.option("--disk", "disks", multiple=True, metavar="PATH[,readonly][,offset=B,size=B]",
              help="a virtio-blk disk for every guest, copied for each (repeatable)")
@click.option("--max-instructions", type=COUNT, default=None,
              help="stop each guest after this many instructions (exit 125)")
@click.option("--clock", type=click.Choice(["virtual", "host"]), default=None,
              help="virtual (default) or host, as for hvemu boot")
def fleet_run(targets, address, workers, repeat, qemu, json_path, timeout, vcpus, memory,
              engine, reference, disks, max_instructions, clock) -> None:
    """Run SPEC.toml's matrix, or each IMAGE (a file, a bundled image, a directory of
    images) in every configuration the options give, as Ray tasks."""
    from rich.console import Console

    from . import fleet
    from .disks import DiskSpec

    engines = list(engine) + (["reference"] if reference else [])
    if len(targets) == 1 and targets[0].endswith(".toml"):
        given = [n for n, v in (("--vcpus", vcpus), ("--memory", memory), ("--engine", engines),
                                ("--disk", disks), ("--max-instructions", max_instructions),
                                ("--clock", clock)) if v]
        if given:
            raise UsageError(f"{given[0]}: with a SPEC.toml, give the guests' options in it "
                             "(only --repeat, --timeout and --qemu override the file)")
        spec = fleet.load_spec(targets[0])
        guests, axes = spec.guests, spec.axes
        repeat = repeat or spec.repeat or 1
        timeout = timeout or spec.timeout or DEFAULT_TIMEOUT
        qemu = bool(qemu or spec.qemu)
    else:
        if any(t.endswith(".toml") for t in targets):
            raise UsageError("give one SPEC.toml, or images: not both")
        guests = fleet.guests_from_paths(list(targets), [DiskSpec.parse(d) for d in disks],
                                         max_instructions, clock or "virtual")
        axes = {"vcpus": list(dict.fromkeys(vcpus)), "memory": list(dict.fromkeys(memory)),
                "engine": list(dict.fromkeys(engines))}
        repeat, timeout, qemu = repeat or 1, timeout or DEFAULT_TIMEOUT, bool(qemu)
    if address is not None and workers is not None:
        raise UsageError("--workers sizes the local Ray instance: not with --address")
    if json_path:
        try:                                  # refuse an unwritable path before the fleet runs
            open(json_path, "a").close()
        except OSError as e:
            raise CantCreateError(f"--json {json_path}: cannot write ({e.strerror})") from None
    cells = fleet.build_cells(guests, axes, timeout)
    shipped = sum(os.path.getsize(p) for p in {f for c in cells for f in c.guest.files()})
    err = Console(stderr=True)
    started = time.monotonic()
    # Ray prints its own notes (a worker that died, ...) on stdout: they go to stderr, so
    # that stdout holds only the table; SIGTERM stops the fleet as Ctrl-C does (and the
    # local Ray instance with it)
    with contextlib.redirect_stdout(sys.stderr), _sigterm_interrupts():
        with err.status("joining the Ray cluster" if address else
                        "starting a local Ray instance"):
            f = fleet.Fleet(address, workers, object_store=2 * shipped + (64 << 20))
        with f:
            slots = f.slots
            runs = _run_with_progress(f, cells, repeat, qemu, err, slots)
    wall = time.monotonic() - started
    rows = fleet.summarize(cells, runs)
    where = address or f"a local Ray instance of {slots} worker{'s' if slots > 1 else ''}"
    title = (f"hvemu fleet: {len(cells)} guest configurations × {repeat} on {where}, "
             f"{wall:.1f} s")
    out = Console(width=max(150 if qemu else 120, Console().width))
    out.print(fleet.table(rows, title, qemu))
    for r in rows:
        if r["result"] not in ("poweroff", "shutdown") or r["exit_code"]:
            for detail in r["details"][:1]:
                err.print(f"hvemu: {r['guest']} ({r['label']}): {r['result']}: {detail}",
                          markup=False, highlight=False, soft_wrap=True)
    if json_path:
        data = {"address": address, "workers": slots, "repeat": repeat, "wall_seconds": wall,
                "cells": rows}
        try:
            with open(json_path, "w") as fh:
                json.dump(data, fh, indent=2, default=str)
        except OSError as e:
            err.print(f"hvemu: --json {json_path}: cannot write ({e.strerror})", markup=False)
    sys.exit(next((min(r["exit_code"], 255) for r in rows if r["exit_code"]), 0))


@contextlib.contextmanager
def _sigterm_interrupts():
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _run_with_progress(f, cells, repeat, qemu, err, slots):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    total = repeat * sum(1 + (qemu and c.guest.qemu_can_run) for c in cells)
    failed = 0
    with Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as progress:
        bar = progress.add_task(f"fleet on {slots} workers", total=total)

        def on_result(run):
            nonlocal failed
            failed += run.get("exit_code", 0) != 0
            progress.update(bar, advance=1, description=f"fleet on {slots} workers, "
                            f"{failed} not 0" if failed else f"fleet on {slots} workers")
        return f.run(cells, repeat=repeat, qemu=qemu, on_result=on_result)


HOPS = Parsed("count", lambda text: parse_count(text, "number of moves", 1, 1000))
DOWNTIME = Parsed("ms", lambda text: parse_count(text, "downtime limit in ms", 1, 600_000))


@fleet_group.command("migrate", cls=QemuCommand)
@click.argument("image", required=False)
@click.option("--bios", default=None, help="firmware, as for hvemu boot")
@click.option("--kernel", default=None, help="an S-mode kernel, as for hvemu boot")
@click.option("--initrd", default=None, help="an initial RAM disk for the --kernel")
@click.option("--append", default="", help="the kernel command line")
@click.option("--vcpus", type=VCPUS, default=1, help="harts (default 1)")
@click.option("--memory", "-m", type=MEMORY, default=128 << 20, help="guest RAM (default 128M)")
@click.option("--disk", "disks", multiple=True, metavar="PATH[,readonly][,offset=B,size=B]",
              help="a virtio-blk disk, copied to each actor; a writable one moves with the VM")
@click.option("--clock", type=click.Choice(["virtual", "host"]), default="virtual")
@click.option("--max-instructions", type=COUNT, default=None,
              help="stop the guest after this many instructions (exit 125)")
@click.option("--timeout", type=SECONDS, default=None,
              help=f"seconds of host time for the guest, all moves included (default "
                   f"{DEFAULT_TIMEOUT:g}; exit 124)")
@click.option("--after", type=SECONDS, default=0.5,
              help="seconds the guest runs before each move (default 0.5)")
@click.option("--hops", type=HOPS, default=1, help="how many times it moves (default 1)")
@click.option("--downtime-limit", type=DOWNTIME, default=None,
              help="ms the final stop may take (QMP migrate-set-parameters; default 300)")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="join this Ray cluster; default: a local Ray instance, started and stopped")
@click.option("--workers", type=WORKERS, default=None,
              help="CPUs of the local Ray instance (default: this machine's)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="write the moves and the guest's result as JSON to this file")
def fleet_migrate(image, bios, kernel, initrd, append, vcpus, memory, disks, clock,
                  max_instructions, timeout, after, hops, downtime_limit, address, workers,
                  json_path) -> None:
    """Run a guest in a Ray actor and move it, live, to an actor on another node (on a
    one-node cluster: another worker) every --after seconds, --hops times.  stdout is
    the guest's console; stderr a line per move and the table of moves."""
    from rich.console import Console

    from . import fleet, fleetmigrate, images
    from .disks import DiskSpec

    if image is not None and bios is not None:
        raise UsageError("give either IMAGE or --bios, not both")
    firmware = image or bios
    if firmware is None and kernel is None:
        raise UsageError("give an IMAGE (or --bios) or a --kernel to run")
    if (initrd or append) and kernel is None:
        raise UsageError(f"{'--initrd' if initrd else '--append'} needs a --kernel")
    if address is not None and workers is not None:
        raise UsageError("--workers sizes the local Ray instance: not with --address")
    paths = {}
    for what, given in (("image", firmware), ("kernel", kernel), ("initrd", initrd)):
        if given is not None:
            paths[what] = images.resolve(given) if what != "initrd" else given
            fleet._check_readable(paths[what])
    specs = [DiskSpec.parse(d) for d in disks]
    for d in specs:
        fleet._check_readable(d.path, "disk ")
    if json_path:
        try:
            open(json_path, "a").close()
        except OSError as e:
            raise CantCreateError(f"--json {json_path}: cannot write ({e.strerror})") from None
    name = os.path.basename(firmware or kernel)
    guest = fleet.Guest(name, image=paths.get("image"), kernel=paths.get("kernel"),
                        initrd=paths.get("initrd"), append=append, disks=specs,
                        max_instructions=max_instructions, clock=clock)
    timeout = timeout or DEFAULT_TIMEOUT
    payload = fleetmigrate.payload_of(guest, vcpus, memory, timeout)
    params = {} if downtime_limit is None else {"downtime-limit": downtime_limit}
    err = Console(stderr=True, highlight=False)
    out = sys.stdout.buffer
    shipped = sum(os.path.getsize(p) for p in guest.files())
    with contextlib.redirect_stdout(sys.stderr), _sigterm_interrupts():
        with err.status("joining the Ray cluster" if address else
                        "starting a local Ray instance"):
            f = fleet.Fleet(address, workers, object_store=2 * shipped + (64 << 20))
        with f:
            mover = fleetmigrate.Mover(f, payload, out=out,
                                       on_hop=lambda h: err.print(
                                           "hvemu: " + fleetmigrate.hop_line(h),
                                           markup=False, soft_wrap=True))
            result = mover.run(after, hops, params)
    if result["result"] not in ("poweroff",):
        err.print(f"hvemu: {name}: {result['result']}"
                  + (f": {result['detail']}" if result.get("detail") else ""),
                  markup=False, soft_wrap=True)
    if result["hops"]:
        where = address or "a local Ray instance"
        wide = Console(stderr=True, width=max(130, err.width))
        wide.print(fleetmigrate.table(result, f"hvemu fleet migrate: {name} on {where}, "
                                              f"{result['wall']:.1f} s"))
    tried = len(result["hops"])
    if tried < hops and result["result"] not in ("refused",) and \
            all(h["status"] == "completed" for h in result["hops"]):
        err.print(f"hvemu: {name} ended after {tried} of {hops} moves (--after {after:g} s)",
                  markup=False, soft_wrap=True)
    if json_path:
        try:
            with open(json_path, "w") as fh:
                json.dump(result, fh, indent=2, default=str)
        except OSError as e:
            err.print(f"hvemu: --json {json_path}: cannot write ({e.strerror})", markup=False)
    sys.exit(min(result["exit_code"], 255))
