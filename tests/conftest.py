"""Shared helpers for the CLI, bad-input, firmware, device and CSR/trap tests.

* `run_hvemu(*args)` runs the `hvemu` command as a subprocess (`python -m
  hvemu.cli`) with stdin from /dev/null and a timeout, and returns the
  CompletedProcess (text, undecodable bytes replaced).
* `RV` encodes the handful of RV64 instructions the tests need to build tiny raw
  guest images without an assembler; `raw_image` writes such an image to a file.
* `hello_vm` is a fresh `hvemu.vm.VM` booted (not yet run) from the bundled
  hello image, for tests that poke at the virtual hart directly.
* `require_tool(name)` finds a host tool (make, the cross toolchain): missing, the
  calling test is skipped, or fails when the environment variable CI is set.
"""
from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BUNDLED = ("hello", "bench", "csrloop", "htif")
HELLO_ELF = FIRMWARE / "hello.elf"

# exit codes of `hvemu` (the table in hvemu/cli.py): hvemu's own failures are
# <sysexits.h> codes, so that they never look like a guest's own exit code 1 or 2
EXIT_USAGE = 64          # a bad command line (EX_USAGE)
EXIT_DATAERR = 65        # a malformed input file (EX_DATAERR)
EXIT_NOINPUT = 66        # an input file missing, unreadable or not a regular file
EXIT_SOFTWARE = 70       # an internal error
EXIT_OSERR = 71          # the host cannot allocate guest RAM
EXIT_CANTCREAT = 73      # an output file cannot be created
EXIT_IOERR = 74          # host I/O failed (stdout closed or full)
EXIT_FAULT, EXIT_IDLE, EXIT_TIMEOUT, EXIT_MAX_INSNS = 120, 121, 124, 125
HVEMU_FAILURES = (EXIT_USAGE, EXIT_DATAERR, EXIT_NOINPUT, EXIT_SOFTWARE, EXIT_OSERR,
                  EXIT_CANTCREAT, EXIT_IOERR)


def run_hvemu(*args, timeout: float = 60, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`hvemu ARGS...` as a subprocess: stdin /dev/null, stdout and stderr captured."""
    environment = dict(os.environ if env is None else env)
    environment.pop("HVEMU_DEBUG", None)        # errors must be one line, as users see them
    return subprocess.run([sys.executable, "-m", "hvemu.cli", *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=timeout, cwd=cwd, env=environment)


# Runs hvemu as its own child and reports that child's peak RSS on the fd in argv[1].  A process
# forked from pytest itself would start with pytest's resident pages in its peak (Linux
# keeps the high-water mark across exec), so the launcher -- small, started with -S --
# forks instead, and the limit on address space is set in it before the fork.
_MEASURING_LAUNCHER = """
import os, resource, sys
report, limit = int(sys.argv[1]), int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
pid = os.fork()
if pid == 0:
    os.close(report)
    os.execv(sys.executable, [sys.executable, "-m", "hvemu.cli", *sys.argv[3:]])
_, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss * 1024).encode())
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_hvemu_measured(*args, timeout: float = 60, address_space: int | None = None,
                       env=None) -> tuple[subprocess.CompletedProcess, int]:
    """`hvemu ARGS...` as run_hvemu() does, and the peak resident memory of that process
    in bytes (its own, from wait4); address_space: an RLIMIT_AS for it in bytes, so that
    an allocation beyond it fails there instead of hurting this host."""
    environment = dict(os.environ if env is None else env)
    environment.pop("HVEMU_DEBUG", None)
    environment["OPENBLAS_NUM_THREADS"] = "1"      # numpy's thread pool: no address space
    read_end, write_end = os.pipe()
    try:
        launcher = subprocess.Popen([sys.executable, "-S", "-c", _MEASURING_LAUNCHER,
                                     str(write_end), str(address_space or 0), *map(str, args)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace",
                                    env=environment, pass_fds=(write_end,),
                                    start_new_session=True)
        try:
            out, err = launcher.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)      # the launcher and hvemu with it
            launcher.communicate()
            raise
        proc = subprocess.CompletedProcess(launcher.args, launcher.returncode, out, err)
        os.close(write_end)
        write_end = -1
        peak = int(os.read(read_end, 64) or 0)
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
    return proc, peak


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The non-blank lines hvemu wrote to stderr."""
    return [line for line in proc.stderr.splitlines() if line.strip()]


class RV:
    """Encoders for the few RV64 instructions the tests' raw guests use."""

    ZERO, RA, SP, T0, T1, T2, A0, A1 = 0, 1, 2, 5, 6, 7, 10, 11
    WFI, ECALL, MRET, SRET, J_SELF = 0x10500073, 0x00000073, 0x30200073, 0x10200073, 0x0000006F

    @staticmethod
    def lui(rd: int, imm20: int) -> int:
        return ((imm20 & 0xFFFFF) << 12) | (rd << 7) | 0x37

    @staticmethod
    def addi(rd: int, rs1: int, imm: int) -> int:
        return ((imm & 0xFFF) << 20) | (rs1 << 15) | (rd << 7) | 0x13

    @staticmethod
    def slli(rd: int, rs1: int, shamt: int) -> int:
        return ((shamt & 63) << 20) | (rs1 << 15) | (1 << 12) | (rd << 7) | 0x13

    @staticmethod
    def jalr(rd: int, rs1: int, imm: int = 0) -> int:
        return ((imm & 0xFFF) << 20) | (rs1 << 15) | (rd << 7) | 0x67

    @staticmethod
    def jal(rd: int, offset: int) -> int:
        o = offset & 0x1FFFFF
        return ((((o >> 20) & 1) << 31) | (((o >> 1) & 0x3FF) << 21) | (((o >> 11) & 1) << 20)
                | (((o >> 12) & 0xFF) << 12) | (rd << 7) | 0x6F)

    @staticmethod
    def sw(rs2: int, rs1: int, imm: int) -> int:
        imm &= 0xFFF
        return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (2 << 12) | ((imm & 31) << 7) | 0x23

    @staticmethod
    def csrrw(rd: int, csr: int, rs1: int) -> int:
        return (csr << 20) | (rs1 << 15) | (1 << 12) | (rd << 7) | 0x73

    @staticmethod
    def csrrs(rd: int, csr: int, rs1: int) -> int:
        return (csr << 20) | (rs1 << 15) | (2 << 12) | (rd << 7) | 0x73

    @classmethod
    def li(cls, rd: int, value: int) -> list[int]:
        """lui + addi for a signed 32-bit value."""
        lo = ((value & 0xFFF) ^ 0x800) - 0x800
        hi = ((value - lo) >> 12) & 0xFFFFF
        return [cls.lui(rd, hi), cls.addi(rd, rd, lo)] if hi else [cls.addi(rd, cls.ZERO, lo)]

    @classmethod
    def poweroff(cls, code: int = 0) -> list[int]:
        """Write the test finisher at 0x10_0000: pass (0) or fail with code."""
        value = 0x5555 if code == 0 else (code << 16) | 0x3333
        return [cls.lui(cls.T2, 0x100), *cls.li(cls.T1, value), cls.sw(cls.T1, cls.T2, 0)]

    @staticmethod
    def code(*words) -> bytes:
        """Pack 32-bit instructions (ints or lists of ints) into little-endian bytes."""
        flat: list[int] = []
        for w in words:
            flat.extend(w if isinstance(w, list) else [w])
        return struct.pack(f"<{len(flat)}I", *flat)


@pytest.fixture
def raw_image(tmp_path):
    """raw_image(data, name="guest.bin") -> the path of a file holding data."""
    def make(data: bytes, name: str = "guest.bin") -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return make


@pytest.fixture
def hello_vm():
    """A VM booted from the bundled hello image (hart at the boot ROM, not run yet)."""
    from hvemu.vm import VM, VMConfig
    return VM(VMConfig(image=str(HELLO_ELF)))


def require_tool(name: str, packages: str = "gcc-riscv64-unknown-elf, binutils and make") -> str:
    """The path of a host tool; skip without it, but fail in CI (env var CI set)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (install {packages})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; required when CI is set")
        pytest.skip(message)
    return path


def require_module(name: str, package: str):
    """Import a Python module a test needs; skip without it, but fail in CI (env CI set)."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"the Python module {name} is not installed (pip install {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; required when CI is set")
        pytest.skip(message)
