"""The `hvemu` command.

    hvemu boot [IMAGE]      boot a guest (default: the bundled `hello`)
    hvemu images            list the bundled guest images

Exit status: the guest's own exit code when it powers off; 120 when the guest
crashed (a fault its own trap handler cannot take); 121 when it waits forever
(WFI with nothing that could wake it); 124 on --timeout; 125 on
--max-instructions; 1 for bad input; 2 for a bad command line.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys

import click

from .errors import HvemuError

EXIT_FAULT, EXIT_IDLE, EXIT_TIMEOUT, EXIT_MAX_INSNS = 120, 121, 124, 125
STOP_CODES = {"crash": EXIT_FAULT, "idle": EXIT_IDLE, "timeout": EXIT_TIMEOUT,
              "max-instructions": EXIT_MAX_INSNS, "shutdown": 0}
SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGkmg]?)(i?[Bb])?\s*$")


def parse_size(text: str) -> int:
    """'128M' -> 134217728 (suffixes K, M, G are powers of 1024)."""
    m = SIZE_RE.match(text)
    if not m:
        raise HvemuError(f"bad size {text!r}: give a number with an optional K, M or G suffix")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hvemu")
def cli() -> None:
    """hvemu: a trap-and-emulate hypervisor emulator for RISC-V (RV64) guests."""


@cli.command()
@click.argument("image", required=False)
@click.option("--bios", default=None, help="firmware started in M-mode (instead of IMAGE), "
              "e.g. OpenSBI's fw_jump.bin")
@click.option("--kernel", default=None, help="an S-mode kernel loaded at 0x8020_0000; "
              "without firmware the hypervisor provides SBI itself")
@click.option("--initrd", default=None, help="an initial RAM disk for the --kernel "
              "(placed as QEMU does: kernel + min(RAM/2, 128 MiB))")
@click.option("--append", default="", help="the kernel command line (/chosen/bootargs)")
@click.option("--clock", type=click.Choice(["virtual", "host"]), default="virtual",
              show_default=True, help="virtual: time counts instructions (reproducible); "
              "host: time follows the host clock and an idle guest sleeps")
@click.option("--memory", "-m", default="128M", show_default=True,
              help="guest RAM size (suffixes K, M, G)")
@click.option("--max-instructions", type=click.IntRange(min=1), default=None,
              help="stop after this many guest instructions (exit 125)")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="stop after this many seconds of host time (exit 124)")
@click.option("--stats", is_flag=True, help="print a table of exits, time and MIPS at the end")
@click.option("--stats-json", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the same figures as JSON to this file")
@click.option("--trace", is_flag=True, help="print one line per exit to stderr")
@click.option("--disk", "disks", multiple=True, metavar="PATH[,readonly][,offset=B,size=B]",
              help="a virtio-blk disk backed by a host file (or a byte range of one); "
                   "repeatable, up to 8")
@click.option("--reference", is_flag=True,
              help="run on the reference interpreter with every exit through Python handlers "
                   "(no pre-decoded fast path, no native twins)")
def boot(image, bios, kernel, initrd, append, clock, memory, max_instructions, timeout, stats,
         stats_json, trace, disks, reference) -> None:
    """Boot IMAGE (an ELF or raw RV64 image, or a bundled image's name; default: hello)."""
    from . import images
    from .console import TerminalConsole, stdout_console
    from .disks import DiskSpec
    from .vm import VM, VMConfig

    if timeout is not None and not math.isfinite(timeout):
        raise HvemuError(f"--timeout {timeout}: give a finite number of seconds")
    if stats_json:
        try:                                  # refuse an unwritable path before the guest runs
            open(stats_json, "a").close()
        except OSError as e:
            raise HvemuError(f"--stats-json {stats_json}: cannot write ({e.strerror})") from None
    if image is not None and bios is not None:
        raise HvemuError("give either IMAGE or --bios, not both")
    firmware = image or bios
    if firmware is None and kernel is None:      # the bundled demo, whatever is in the cwd
        firmware = images.bundled_path(images.DEFAULT_IMAGE)
    config = VMConfig(image=images.resolve(firmware) if firmware else None,
                      kernel=images.resolve(kernel) if kernel else None,
                      memory=parse_size(memory),
                      max_instructions=max_instructions, timeout=timeout,
                      reference=reference, disks=[DiskSpec.parse(d) for d in disks],
                      initrd=initrd, append=append, clock=clock)
    interactive = sys.stdin.isatty()
    console = TerminalConsole(sys.stdin.fileno()) if interactive else stdout_console(True)
    vm = VM(config, console)
    if trace:
        from .trace import Tracer  # capstone loads only when tracing
        vm.hv.tracer = Tracer()
    if interactive:
        console.vm = vm
        console.on_stats = lambda: print_stats(vm.hv.live_stats())
    outcome = run_on_terminal(vm, console if interactive else None)
    if outcome.reason != "poweroff":
        msg = {"crash": outcome.detail, "idle": f"guest stopped: {outcome.detail}",
               "timeout": f"stopped: --timeout of {timeout} s reached",
               "max-instructions": f"stopped: --max-instructions {max_instructions} reached",
               "shutdown": "the VM was shut down"}
        click.echo(f"\nhvemu: {msg.get(outcome.reason, outcome.reason)}", err=True)
    if stats:
        print_stats(outcome.stats)
    if stats_json:
        figures = outcome.stats.to_dict()
        figures["stop"] = outcome.reason
        figures["exit_code"] = exit_code_of(outcome)
        with open(stats_json, "w") as f:
            json.dump(figures, f, indent=2)
    sys.exit(exit_code_of(outcome))


def exit_code_of(outcome) -> int:
    """The process exit status for how the run ended (see the module docstring)."""
    code = outcome.exit_code if outcome.reason == "poweroff" else STOP_CODES[outcome.reason]
    return min(code, 255)


def run_on_terminal(vm, terminal):
    """Run the VM; with an interactive terminal, in console mode, restored on every way
    out (a normal end, a guest crash, an exception, Ctrl-A x, SIGTERM)."""
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        if terminal is not None:
            terminal.enter()
        return vm.run()
    finally:
        if terminal is not None:
            terminal.restore()
        signal.signal(signal.SIGTERM, old)


@cli.group("disk")
def disk_group() -> None:
    """Make and inspect raw disk images."""


@disk_group.command("create")
@click.argument("path")
@click.argument("size")
def disk_create(path, size) -> None:
    """Create PATH, a sparse raw image of SIZE bytes (suffixes K, M, G, T)."""
    from .disks import create_disk, parse_bytes
    create_disk(path, parse_bytes(size, "disk size"))
    click.echo(f"created {path}: {parse_bytes(size, 'disk size'):,} bytes (sparse)")


@disk_group.command("info")
@click.argument("path")
def disk_info_command(path) -> None:
    """Show PATH's size, sectors and how much of it is allocated on the host."""
    from .disks import disk_info
    info = disk_info(path)
    click.echo(f"{info['path']}: {info['size']:,} bytes, {info['sectors']:,} sectors of 512, "
               f"{info['allocated']:,} bytes allocated{' (sparse)' if info['sparse'] else ''}")


@cli.command("images")
def list_images() -> None:
    """List the bundled guest images."""
    from . import images
    listed = images.bundled()
    width = max(map(len, listed))
    for name, desc in listed.items():
        click.echo(f"{name:<{width}}  {desc}")


@cli.command("bench")
@click.argument("images_", metavar="[IMAGE]...", nargs=-1)
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="runs per figure; the best counts")
@click.option("--qemu/--no-qemu", default=True, show_default=True,
              help="also time the same guest on qemu-system-riscv64, when installed")
@click.option("--gate", is_flag=True, help="check the perf gate against the baseline")
@click.option("--update-baseline", is_flag=True, help="measure and write a new baseline")
@click.option("--baseline", type=click.Path(dir_okay=False), default="bench/baseline.json",
              show_default=True, help="the perf gate's baseline file")
def bench_command(images_, repeat, qemu, gate, update_baseline, baseline) -> None:
    """Time guests on hvemu (and QEMU), or run the CI perf gate."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from . import benchmark

    console = Console(width=max(120, Console().width))
    if update_baseline:
        data = benchmark.update_baseline(Path(baseline))
        console.print(f"wrote {baseline}: " + json.dumps(data["counts"]))
        return
    if gate:
        rows = benchmark.check_gate(Path(baseline))
        tolerance = benchmark.load_baseline(Path(baseline)).get("tolerance", 0.1)
        t = Table(title=f"perf gate: host instructions (callgrind) per guest instruction or "
                        f"exit; ceiling = baseline + {tolerance:.0%}")
        for col in ("figure", "per", "host instructions", "baseline", "ceiling", "result"):
            t.add_column(col, justify="left" if col in ("figure", "per") else "right")
        for r in rows:
            t.add_row(r["name"], r["per"], f"{r['value']:,.2f}", f"{r['baseline']:,.2f}",
                      f"{r['ceiling']:,.2f}", "pass" if r["ok"] else "[red]FAIL[/red]")
        console.print(t)
        if not all(r["ok"] for r in rows):
            sys.exit(1)
        return
    t = Table(title="hvemu vs QEMU (TCG): same guest, same machine")
    for col in ("image", "instructions", "hvemu s", "hvemu MIPS", "QEMU s", "QEMU MIPS",
                "hvemu/QEMU"):
        t.add_column(col, justify="right")
    use_qemu = qemu and benchmark.qemu_available()
    for image in images_ or ("bench",):
        m = benchmark.run_hvemu(image, repeat)
        row = [image, f"{m.instructions:,}", f"{m.seconds:.3f}", f"{m.mips:,.1f}"]
        if use_qemu:
            q = benchmark.run_qemu(image, repeat)
            qmips = m.instructions / q / 1e6
            row += [f"{q:.3f}", f"{qmips:,.1f}", f"{m.mips / qmips:.2f}"]
        else:
            row += ["-", "-", "-"]
        t.add_row(*row)
    console.print(t)
    if use_qemu:
        console.print("QEMU's time is its wall time less its start-up (a guest that powers "
                      "off at once); its instruction count is hvemu's (the same guest).")
    elif qemu:
        console.print("qemu-system-riscv64 is not installed: hvemu figures only.")


def print_stats(stats) -> None:
    from rich.console import Console
    from rich.table import Table

    d = stats.to_dict()
    t = Table(title="hvemu statistics", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("instructions retired", f"{d['instructions']:,}")
    t.add_row("seconds", f"{d['seconds']:.3f}")
    t.add_row("MIPS", f"{d['mips']:.1f}")
    t.add_row("seconds in the fast path", f"{d['core_seconds']:.3f}")
    t.add_row("seconds in handlers", f"{d['handler_seconds']:.3f}")
    t.add_row("exits", f"{d['exits_total']:,}")
    t.add_row("exits/second", f"{d['exits_per_second']:,.0f}")
    for section, title in (("exits", "exits: {}"), ("privileged_instructions", "privileged: {}"),
                           ("exceptions", "exception: {}"), ("interrupts", "interrupt: {}"),
                           ("mmio", "mmio: {}"), ("sbi", "sbi: {}"), ("shadow", "shadow: {}")):
        for k, v in d[section].items():
            t.add_row(title.format(k), f"{v:,}")
    Console(stderr=True, width=max(100, Console(stderr=True).width)).print(t)


def main(argv=None) -> None:
    """Entry point: one-line errors, no tracebacks (HVEMU_DEBUG=1 shows them)."""
    try:
        cli.main(args=argv, prog_name="hvemu", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:   # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help())
        sys.exit(2)
    except click.UsageError as e:
        click.echo(f"hvemu: {e.format_message()}", err=True)
        sys.exit(2)
    except click.Abort:
        click.echo("hvemu: aborted", err=True)
        sys.exit(130)
    except HvemuError as e:
        click.echo(f"hvemu: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\nhvemu: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a bug in hvemu: still one line unless debugging
        if os.environ.get("HVEMU_DEBUG"):
            raise
        click.echo(f"hvemu: internal error: {type(e).__name__}: {e} "
                   "(set HVEMU_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
