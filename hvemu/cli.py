"""The `hvemu` command.

    hvemu boot [IMAGE]      boot a guest (default: the bundled `hello`)
    hvemu run PROG [ARGS]   run a RISC-V 64 Linux program (a process VM, like qemu-riscv64)
    hvemu images            list the bundled guest images
    hvemu disk create|info  make and inspect raw disk images
    hvemu bench             time guests; the CI perf gate
    hvemu fleet run|migrate a matrix of guests as Ray tasks (hvemu/fleet.py); a VM moved live
                            between Ray actors (hvemu/fleetmigrate.py)

QEMU's single-dash spellings of the options hvemu shares with it work too:
`-bios`, `-kernel`, `-m` (a bare number is MiB, as in QEMU; `B` means bytes), `-qmp`,
`-gdb`, `-s`, `-S`, and `-bios none` means no firmware, as in QEMU: the `-kernel` image
starts in M-mode.

Exit status (hvemu's own failures use <sysexits.h> codes, so they do not look
like a guest's exit code 1 or 2):

     0   the guest powered off with 0, or the VM was shut down (Ctrl-A x)
   N     the guest powered off with N (finisher, HTIF or SBI SRST; above 255: 255)
    64   a bad command line: unknown option, bad value (EX_USAGE)
    65   a malformed input: a bad ELF, an image that does not fit (EX_DATAERR)
    66   an input file missing, unreadable or not a regular file (EX_NOINPUT)
    69   a host tool or service is missing: valgrind, for `hvemu bench --gate`; Ray or
         the --address cluster for `hvemu fleet`; or a --qmp or
         --gdb socket is in use (EX_UNAVAILABLE)
    70   an internal error, a bug in hvemu, a --replay that diverged, or a hosted
         hypervisor's process that died (EX_SOFTWARE)
    71   the host cannot allocate the guest's RAM, or its frame pool ran dry (EX_OSERR)
    73   an output file cannot be created (EX_CANTCREAT)
    74   host I/O failed: the console's stdout was closed or full (EX_IOERR)
    75   `hvemu fleet migrate`: a move failed; the guest ran on where it was (EX_TEMPFAIL)
   120   the guest crashed: a fault its own trap handler cannot take
   121   the guest waits for an interrupt (WFI) that cannot come
   124   --timeout reached
   125   --max-instructions reached
   130   interrupted (Ctrl-C, SIGTERM)

A --stats-json file that cannot be written at the end is reported on stderr, and
the exit status stays the guest's.  `hvemu bench --gate` exits 1 when a figure fails.

`hvemu run` ends with the program's own exit status, 128 + n when signal n killed it;
when it refuses the program, with the codes above: 65 for a file that is not a RISC-V 64
Linux executable, 66 for a missing program, interpreter or sysroot, 71 when the host
refuses the --memory asked for.
"""
from __future__ import annotations

import json
import os
import sys

import click

from .errors import (
    EX_IOERR,
    EX_OSERR,
    EX_SOFTWARE,
    EX_USAGE,
    CantCreateError,
    HostIOError,
    HvemuError,
    UsageError,
)
from .hypervisor import CLASSES as HYPERVISOR_CLASSES
from .units import parse_count, parse_seconds, parse_size

EXIT_FAULT, EXIT_IDLE, EXIT_TIMEOUT, EXIT_MAX_INSNS, EXIT_INTERRUPTED = 120, 121, 124, 125, 130
STOP_CODES = {"crash": EXIT_FAULT, "idle": EXIT_IDLE, "timeout": EXIT_TIMEOUT,
              "max-instructions": EXIT_MAX_INSNS, "shutdown": 0, "nomem": EX_OSERR}

# QEMU's single-dash spellings of options hvemu shares with QEMU -> hvemu's option.
# A later option QEMU also has (-initrd, -append, -smp, -s, -S, -gdb, -qmp, -incoming)
# adds its line here.
QEMU_SPELLINGS = {
    "-bios": "--bios",
    "-kernel": "--kernel",
    "-m": "--memory",
    "-initrd": "--initrd",
    "-append": "--append",
    "-smp": "--vcpus",
    "-qmp": "--qmp",
    "-gdb": "--gdb",
    "-incoming": "--incoming",
}


def parse_memory(text: str) -> int:
    """Guest RAM: '128M' -> 134217728; a bare number is MiB, as in QEMU's -m."""
    from .vm import check_memory_size
    size = parse_size(text, "memory size", bare="M")
    check_memory_size(size)
    return size


def respell_qemu(args: list[str], takes_value: set[str]) -> list[str]:
    """args with QEMU's spellings (QEMU_SPELLINGS) replaced by hvemu's; an option's
    value and anything after `--` is left alone."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        arg = QEMU_SPELLINGS.get(arg, arg)
        out.append(arg)
        if arg in takes_value:
            value = next(it, None)
            if value is not None:
                out.append(value)
    return out


class QemuCommand(click.Command):
    """A click command that also accepts QEMU_SPELLINGS."""

    def parse_args(self, ctx, args):
        takes_value = {name for p in self.get_params(ctx)
                       if isinstance(p, click.Option) and not p.is_flag and not p.count
                       for name in p.opts + p.secondary_opts}
        return super().parse_args(ctx, respell_qemu(list(args), takes_value))


class Parsed(click.ParamType):
    """A click parameter type from one of hvemu.units' strict parsers."""

    def __init__(self, name: str, parse):
        self.name = name
        self.parse = parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except HvemuError as e:
            self.fail(str(e), param, ctx)


MEMORY = Parsed("size", parse_memory)
COUNT = Parsed("count", lambda text: parse_count(text, "count"))
PROCESS_MEMORY = Parsed("size", lambda text: parse_process_memory(text))
SECONDS = Parsed("seconds", lambda text: parse_seconds(text, "number of seconds"))


def parse_vcpus(text: str) -> int:
    """--vcpus N, or QEMU's -smp N / -smp cpus=N: 1 to 64 harts."""
    from .vm import MAX_VCPUS
    value = text[len("cpus="):] if text.startswith("cpus=") else text
    return parse_count(value, "number of vCPUs", 1, MAX_VCPUS)


VCPUS = Parsed("vcpus", parse_vcpus)


class HvemuGroup(click.Group):
    """The command group; a closed stdout is hvemu's I/O error (exit 74), not click's
    silent exit 1.  LAZY commands live in modules loaded only when asked for."""

    LAZY = {"fleet": ("hvemu.fleetcli", "fleet_group")}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx, name):
        if name in self.LAZY and name not in self.commands:
            import importlib
            module, attr = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise HostIOError("stdout: cannot write (Broken pipe)") from None


@click.group(cls=HvemuGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hvemu")
def cli() -> None:
    """hvemu: a trap-and-emulate hypervisor emulator for RISC-V (RV64) guests."""


@cli.command(cls=QemuCommand)
@click.argument("image", required=False)
@click.option("--bios", default=None, help="firmware started in M-mode (instead of IMAGE), "
              "e.g. OpenSBI's fw_jump.bin; 'none': no firmware, the --kernel image starts "
              "in M-mode (QEMU: -bios)")
@click.option("--kernel", default=None, help="an S-mode kernel loaded at 0x8020_0000; "
              "without firmware the hypervisor provides SBI itself (QEMU: -kernel)")
@click.option("--initrd", default=None, help="an initial RAM disk for the --kernel, placed "
              "as QEMU does: kernel + min(RAM/2, 128 MiB) (QEMU: -initrd)")
@click.option("--append", default="", help="the kernel command line, /chosen/bootargs "
              "(QEMU: -append)")
@click.option("--vcpus", type=VCPUS, default=1, show_default=True,
              help="harts in the guest, 1 to 64, whatever the host has (QEMU: -smp N)")
@click.option("--clock", type=click.Choice(["virtual", "host"]), default="virtual",
              show_default=True, help="virtual: time counts instructions (reproducible); "
              "host: time follows the host clock and an idle guest sleeps")
@click.option("--memory", "-m", type=MEMORY, default="128M", show_default=True,
              help="guest RAM size: suffixes B, K, M, G; a bare number is MiB (QEMU: -m)")
@click.option("--max-instructions", type=COUNT, default=None,
              help="stop after this many guest instructions, 1 to 2^64-1 (exit 125)")
@click.option("--timeout", type=SECONDS, default=None,
              help="stop after this many seconds of host time, within 0.1 s (exit 124)")
@click.option("--stats", is_flag=True, help="print a table of exits, time and MIPS at the end")
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None,
              help="write the same figures as JSON to this file")
@click.option("--trace", is_flag=True, help="print one line per exit to stderr")
@click.option("--disk", "disks", multiple=True, metavar="PATH[,readonly][,offset=B,size=B]",
              help="a virtio-blk disk backed by a host file (or a byte range of one); "
                   "repeatable, up to 8")
@click.option("--reference", is_flag=True,
              help="run on the reference interpreter with every exit through Python handlers "
                   "(no pre-decoded fast path, no native twins)")
@click.option("--hypervisor", "hv_class", type=click.Choice(HYPERVISOR_CLASSES),
              default="native", show_default=True,
              help="the system-VM class: native (exits handled in the core's own process: "
                   "sfence.vma, plain-CSR accesses and SIE masking by a privileged part in "
                   "C, the rest by Python handlers), hosted (the hypervisor is a separate "
                   "host process: one more hop through the host OS per exit) or dual "
                   "(hosted, with the same privileged part finishing those without the hop)")
@click.option("--qmp", "qmp", multiple=True, metavar="unix:PATH|tcp:HOST:PORT,server,wait=off",
              help="a QMP control socket, QEMU's protocol and spelling (QEMU: -qmp)")
@click.option("-S", "hold", is_flag=True,
              help="do not start the guest: wait for QMP's cont (or gdb's continue)")
@click.option("--gdb", "gdb", default=None, metavar="tcp::PORT",
              help="a gdb remote stub on this socket (QEMU: -gdb tcp::1234)")
@click.option("-s", "gdb_default", is_flag=True, help="shorthand for --gdb tcp::1234 (QEMU: -s)")
@click.option("--record", default=None, metavar="FILE",
              help="log the run's inputs (console input, host clock, disk identities) to FILE")
@click.option("--replay", default=None, metavar="FILE",
              help="run again from a --record FILE: the same output and instructions")
@click.option("--restore", "restore", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="go on from a snapshot (vm.save): alone, the VM is the "
              "snapshot's; with an image, it must be the snapshot's machine")
@click.option("--incoming", default=None, metavar="tcp:HOST:PORT",
              help="wait for a live migration on HOST:PORT, then run the VM it brings "
                   "(the same machine as this command line's; QEMU: -incoming)")
def boot(image, bios, kernel, initrd, append, vcpus, clock, memory, max_instructions, timeout,
         stats, stats_json, trace, disks, reference, hv_class, qmp, hold, gdb, gdb_default,
         record, replay, restore, incoming) -> None:
    """Boot IMAGE (an ELF or raw RV64 image, or a bundled image's name; default: hello)."""
    from . import images
    from .console import TerminalConsole, stdout_console
    from .disks import DiskSpec
    from .hypervisor.hosted import make_hypervisor
    from .vm import VM, VMConfig

    if stats_json:
        try:                                  # refuse an unwritable path before the guest runs
            open(stats_json, "a").close()
        except OSError as e:
            raise CantCreateError(f"--stats-json {stats_json}: cannot write "
                                  f"({e.strerror})") from None
    if image is not None and bios is not None:
        raise UsageError("give either IMAGE or --bios, not both")
    if bios == "none":                       # QEMU's -bios none: no firmware at all
        if kernel is None:
            raise UsageError("--bios none needs a --kernel to start")
        bios, kernel, image = None, None, kernel
    firmware = image or bios
    if restore is not None and incoming is not None:
        raise UsageError("give either --restore or --incoming, not both")
    if restore is not None and firmware is None and kernel is None:   # the snapshot's VM
        from .snapshot import config_from, read_conf
        config = config_from(read_conf(restore), max_instructions=max_instructions,
                             timeout=timeout, reference=reference)
    else:
        if firmware is None and kernel is None:  # the bundled demo, whatever is in the cwd
            firmware = images.bundled_path(images.DEFAULT_IMAGE)
        config = VMConfig(image=images.resolve(firmware) if firmware else None,
                          kernel=images.resolve(kernel) if kernel else None,
                          memory=memory,
                          max_instructions=max_instructions, timeout=timeout,
                          reference=reference, disks=[DiskSpec.parse(d) for d in disks],
                          initrd=initrd, append=append, clock=clock, vcpus=vcpus)
    if gdb_default and gdb is None:
        gdb = "tcp::1234"
    if hv_class != "native" and (gdb or record or replay):
        raise UsageError("--gdb, -s, --record and --replay need --hypervisor native (a "
                         "hosted hypervisor runs in a process of its own)")
    interactive = sys.stdin.isatty() and replay is None    # a replay's input is recorded
    console = (TerminalConsole(sys.stdin.fileno()) if interactive
               else stdout_console(replay is None))
    vm = VM(config, console, hypervisor=make_hypervisor(hv_class, reserve=config.memory))
    if restore is not None:
        from .snapshot import restore_into
        restore_into(vm, restore)
    if incoming is not None:
        from .migration import receive
        receive(vm, incoming)
    if trace:
        from .trace import Tracer  # capstone loads only when tracing
        vm.set_tracer(Tracer())
    if interactive:
        console.vm = vm
        console.on_stats = lambda: print_stats(vm.live_stats())
    from .control.setup import attach
    native = hv_class == "native"            # else QMP serves from the hypervisor's process
    controls = attach(vm, console, qmp=qmp, gdb=gdb, hold=hold, record=record, replay=replay,
                      start=native)
    if not native:
        vm.hypervisor.in_process.append(controls.start)
        vm.hypervisor.in_process_end.append(controls.close)
    outcome = None
    try:
        outcome = run_on_terminal(vm, console if interactive else None)
    finally:
        controls.close(outcome)
    if outcome.reason != "poweroff":
        msg = {"crash": outcome.detail, "idle": f"guest stopped: {outcome.detail}",
               "timeout": f"stopped: --timeout of {timeout or 0:g} s reached",
               "max-instructions": f"stopped: --max-instructions {max_instructions} reached",
               "shutdown": "the VM was shut down", "nomem": f"stopped: {outcome.detail}"}
        click.echo(f"\nhvemu: {msg.get(outcome.reason, outcome.reason)}", err=True)
    if stats:
        print_stats(outcome.stats)
    if stats_json:
        figures = outcome.stats.to_dict()
        figures["stop"] = outcome.reason
        figures["exit_code"] = exit_code_of(outcome)
        try:
            with open(stats_json, "w") as f:
                json.dump(figures, f, indent=2)
        except OSError as e:                  # the guest's exit status stays the guest's
            click.echo(f"hvemu: --stats-json {stats_json}: cannot write ({e.strerror}); "
                       "the exit status is the guest's", err=True)
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


@cli.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-L", "--sysroot", envvar="QEMU_LD_PREFIX", default=None, metavar="SYSROOT",
              help="where the dynamic loader (PT_INTERP) and the libraries it opens are "
                   "found: absolute paths that exist under SYSROOT are taken from there "
                   "(QEMU's -L; also QEMU_LD_PREFIX)")
@click.option("-E", "set_env", multiple=True, metavar="VAR=VALUE",
              help="set VAR in the program's environment (repeatable)")
@click.option("-U", "unset_env", multiple=True, metavar="VAR",
              help="remove VAR from the program's environment (repeatable)")
@click.option("-0", "argv0", default=None, metavar="ARGV0",
              help="the program's argv[0] (default: PROG as given)")
@click.option("--strace", "-strace", "strace", is_flag=True,
              help="print one line per system call to stderr: name, arguments, result")
@click.option("--stats", is_flag=True,
              help="print instructions, MIPS and system calls by name at the end")
@click.option("--stats-json", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the same figures as JSON to this file")
@click.option("--memory", type=PROCESS_MEMORY, default=None,
              help="the most RAM the program may touch (suffixes K, M, G; a bare number is "
                   "MiB; default: 4G, or the host's RAM if less)")
@click.argument("prog")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_command(sysroot, set_env, unset_env, argv0, strace, stats, stats_json, memory, prog,
                args) -> None:
    """Run PROG, a RISC-V 64 Linux executable, with ARGS, as a process on this host.

    Everything after PROG belongs to the program.  Its stdin, stdout, stderr, working
    directory, environment and exit status are its own."""
    env = dict(os.environ)                  # the program's environment, before hvemu's own
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")     # no idle BLAS threads in hvemu
    from .process import ExecError, run_program

    for item in set_env:
        if "=" not in item or item.startswith("="):
            raise click.BadParameter(f"{item!r}: give VAR=VALUE", param_hint="-E")
        k, v = item.split("=", 1)
        env[k] = v
    for k in unset_env:
        env.pop(k, None)
    size = memory if memory is not None else default_process_memory()
    if stats_json:
        try:                                  # refuse an unwritable path before the program runs
            open(stats_json, "a").close()
        except OSError as e:
            raise CantCreateError(f"--stats-json {stats_json}: cannot write "
                                  f"({e.strerror})") from None

    def report(fig) -> None:
        if stats:
            print_process_stats(fig)
        if stats_json:
            try:
                with open(stats_json, "w") as f:
                    json.dump(fig.to_dict(), f, indent=2)
            except OSError as e:              # the exit status stays the program's
                click.echo(f"hvemu: --stats-json {stats_json}: cannot write ({e.strerror}); "
                           "the exit status is the program's", err=True)

    try:
        status = run_program(prog, list(args), sysroot=sysroot, env=env, strace=strace,
                             stats=bool(stats or stats_json), memory=size, argv0=argv0,
                             report=report)
    except ExecError as e:
        click.echo(f"hvemu: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(status)


def parse_process_memory(text: str) -> int:
    """`hvemu run --memory`: at least 1 MiB; a bare number is MiB, as for `boot -m`."""
    size = parse_size(text, "memory size", bare="M")
    if size < 1 << 20:
        raise UsageError(f"memory size {text!r} is too small: give at least 1M")
    return size


def default_process_memory() -> int:
    """4 GiB, or the host's RAM when it has less."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        ram = 4 << 30
    return min(4 << 30, ram) & ~0xFFFFF


def print_process_stats(fig) -> None:
    from rich.console import Console
    from rich.table import Table

    from .process.abi import SYSCALL_NAMES

    t = Table(title="hvemu run statistics", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("instructions", f"{fig.instructions:,}")
    t.add_row("seconds", f"{fig.seconds:.3f}")
    t.add_row("MIPS", f"{fig.instructions / fig.seconds / 1e6 if fig.seconds else 0:.1f}")
    t.add_row("seconds in the core", f"{fig.core_seconds:.3f}")
    t.add_row("processes", f"{fig.processes:,}")
    t.add_row("execve", f"{fig.execs:,}")
    t.add_row("page faults (demand paging)", f"{fig.faults:,}")
    t.add_row("signals delivered", f"{fig.signals:,}")
    t.add_row("system calls", f"{sum(fig.syscalls.values()):,}")
    for nr, n in sorted(fig.syscalls.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(f"syscall: {SYSCALL_NAMES.get(nr, nr)}", f"{n:,}")
    Console(stderr=True, width=max(80, Console(stderr=True).width)).print(t)


@cli.group("disk")
def disk_group() -> None:
    """Make and inspect raw disk images."""


@disk_group.command("create")
@click.argument("path")
@click.argument("size")
def disk_create(path, size) -> None:
    """Create PATH, a sparse raw image of SIZE bytes (suffixes B, K, M, G, T)."""
    from .disks import create_disk, parse_bytes
    nbytes = parse_bytes(size, "disk size")
    create_disk(path, nbytes)
    click.echo(f"created {path}: {nbytes:,} bytes (sparse)")


@disk_group.command("info")
@click.argument("path")
def disk_info_command(path) -> None:
    """Show PATH's size, sectors and how much of it is allocated on the host."""
    from .disks import disk_info
    info = disk_info(path)
    click.echo(f"{info['path']}: {info['size']:,} bytes, {info['sectors']:,} sectors of 512, "
               f"{info['allocated']:,} bytes allocated{' (sparse)' if info['sparse'] else ''}")


@cli.command("host")
@click.argument("config", metavar="CONFIG.toml")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="write each VM's figures as JSON to this file")
def host_command(config, json_path) -> None:
    """Run the VMs of CONFIG.toml together on one hypervisor (see hvemu/host.py)."""
    from rich.console import Console

    from . import host
    hvs, vms, outcomes = host.run_host(config)
    table, rows = host.host_table(hvs, vms, outcomes, exit_code_of)
    host.print_details(vms, outcomes)
    Console(stderr=True, width=max(140, Console(stderr=True).width)).print(table)
    if json_path:
        try:
            with open(json_path, "w") as f:
                json.dump({"vms": rows, "host_frames_peak": sum(hv.pool.peak for hv in hvs),
                           "host_memory": hvs[0].host_memory, "host_rss": host.host_rss()}, f,
                          indent=2)
        except OSError as e:
            click.echo(f"hvemu: --json {json_path}: cannot write ({e.strerror})", err=True)
    codes = [r["exit_status"] for r in rows]
    sys.exit(next((c for c in codes if c != 0), 0))


@cli.command("images")
def list_images() -> None:
    """List the bundled guest images."""
    from . import images
    listed = images.bundled()
    width = max(map(len, listed))
    for name, desc in listed.items():
        click.echo(f"{name:<{width}}  {desc}")


@cli.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("images_", metavar="[IMAGE]... | --run PROG [ARGS]...", nargs=-1,
                type=click.UNPROCESSED)
@click.option("--run", "run_prog", is_flag=True,
              help="time a RISC-V Linux program (PROG ARGS...) under `hvemu run` next to "
                   "qemu-riscv64; give bench's own options before --run")
@click.option("-L", "--sysroot", default=None, metavar="SYSROOT",
              help="with --run: the sysroot of a dynamically linked PROG")
@click.option("--repeat", type=COUNT, default=3, show_default=True,
              help="runs per figure; the best counts")
@click.option("--qemu/--no-qemu", default=True, show_default=True,
              help="also time the same guest on qemu-system-riscv64, when installed")
@click.option("--gate", is_flag=True, help="check the perf gate against the baseline")
@click.option("--update-baseline", is_flag=True, help="measure and write a new baseline")
@click.option("--baseline", type=click.Path(dir_okay=False), default="bench/baseline.json",
              show_default=True, help="the perf gate's baseline file")
@click.option("--exit-costs", is_flag=True,
              help="ns, host instructions and host-level hops per exit, for each exit kind "
                   "and hypervisor class, next to VT-x's hardware figures")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="with --exit-costs: also write the rows as JSON to this file")
def bench_command(images_, run_prog, sysroot, repeat, qemu, gate, update_baseline,
                  baseline, exit_costs, json_path) -> None:
    """Time guests on hvemu (and QEMU), or run the CI perf gate."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from . import benchmark

    console = Console(width=max(120, Console().width))
    if run_prog:
        if not images_:
            raise click.UsageError("--run needs a program: hvemu bench --run PROG [ARGS]...")
        bench_process(console, list(images_), sysroot, repeat, qemu)
        return
    for image in images_:
        if image.startswith("-"):
            raise click.UsageError(f"no such option: {image}")
    if exit_costs:
        from . import exitcosts
        if json_path:
            try:
                open(json_path, "a").close()
            except OSError as e:
                raise CantCreateError(f"--json {json_path}: cannot write ({e.strerror})") from None
        rows = exitcosts.measure(repeat)
        console.print(exitcosts.table(rows))
        if json_path:
            Path(json_path).write_text(json.dumps(rows, indent=2) + "\n")
        return
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


def bench_process(console, argv: list[str], sysroot, repeat: int, qemu: bool) -> None:
    """`hvemu bench --run PROG ARGS`: the program under `hvemu run` and qemu-riscv64."""
    from rich.table import Table

    from . import benchmark

    prog, args = argv[0], argv[1:]
    if not os.path.isfile(prog):
        raise HvemuError(f"{prog}: no such file")
    m = benchmark.run_process_hvemu(prog, args, repeat, sysroot)
    t = Table(title="hvemu run vs qemu-riscv64: same program, same machine")
    for col in ("program", "instructions", "syscalls", "hvemu s", "hvemu MIPS", "QEMU s",
                "QEMU MIPS", "hvemu/QEMU"):
        t.add_column(col, justify="right")
    row = [" ".join(argv), f"{m.instructions:,}", f"{m.syscalls:,}", f"{m.seconds:.3f}",
           f"{m.mips:,.1f}"]
    use_qemu = qemu and benchmark.qemu_user_available()
    if use_qemu:
        q = benchmark.run_process_qemu(prog, args, repeat, sysroot)
        qmips = m.instructions / q / 1e6
        row += [f"{q:.3f}", f"{qmips:,.1f}", f"{m.mips / qmips:.2f}"]
    else:
        row += ["-", "-", "-"]
    t.add_row(*row)
    console.print(t)
    if use_qemu:
        console.print("Times are CPU seconds (user + sys, steady on a shared machine) less "
                      "the start-up of a program that exits at once (Python's, for hvemu); "
                      "MIPS count hvemu's instructions for both.")
    elif qemu:
        console.print("qemu-riscv64 is not installed (package qemu-user): hvemu figures only.")


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
    if d["exits_finished_in_the_core"]:
        t.add_row("exits finished in the core", f"{d['exits_finished_in_the_core']:,}")
    t.add_row("exits/second", f"{d['exits_per_second']:,.0f}")
    for section, title in (("exits", "exits: {}"), ("privileged_instructions", "privileged: {}"),
                           ("exceptions", "exception: {}"), ("interrupts", "interrupt: {}"),
                           ("mmio", "mmio: {}"), ("sbi", "sbi: {}"), ("shadow", "shadow: {}")):
        for k, v in d[section].items():
            t.add_row(title.format(k), f"{v:,}")
    Console(stderr=True, width=max(100, Console(stderr=True).width)).print(t)


def _say(message: str) -> None:
    """One line on stderr (a closed stderr is not an error on top of the first one)."""
    try:
        click.echo(message, err=True)
    except OSError:
        pass


def _stdout_gone() -> None:
    """stdout cannot be written (a closed pipe, a full device): point it at /dev/null so
    that flushing it at exit does not fail a second time."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def main(argv=None) -> None:
    """Entry point: one-line errors with the exit status of the table above, no
    tracebacks (HVEMU_DEBUG=1 shows them)."""
    try:
        cli.main(args=argv, prog_name="hvemu", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:   # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help())
        sys.exit(EX_USAGE)
    except click.UsageError as e:
        _say(f"hvemu: {e.format_message()}")
        sys.exit(EX_USAGE)
    except click.Abort:
        _say("hvemu: aborted")
        sys.exit(EXIT_INTERRUPTED)
    except HvemuError as e:
        if isinstance(e, HostIOError):
            _stdout_gone()
        _say(f"hvemu: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _say("\nhvemu: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a bug in hvemu: still one line unless debugging
        _internal_error(e)
    try:
        sys.stdout.flush()
    except OSError as e:                      # a closed pipe, a full device
        _stdout_failed(e.strerror)
    sys.exit(0)


def _stdout_failed(reason: str) -> None:
    _stdout_gone()
    _say(f"hvemu: stdout: cannot write ({reason})")
    sys.exit(EX_IOERR)


def _internal_error(e: Exception) -> None:
    if os.environ.get("HVEMU_DEBUG"):
        raise e
    _say(f"hvemu: internal error: {type(e).__name__}: {e} (set HVEMU_DEBUG=1 for a traceback)")
    sys.exit(EX_SOFTWARE)


if __name__ == "__main__":
    main()
