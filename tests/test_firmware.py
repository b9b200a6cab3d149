"""The committed guest images are exactly what the sources build to, and use no F/D.

Needs the cross toolchain (Debian's gcc-riscv64-unknown-elf) and make: without them
these tests are skipped, or fail when the environment variable CI is set."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from conftest import BUNDLED, FIRMWARE, require_tool

KERNEL = FIRMWARE / "kernel"
CROSS_TOOLS = ("make", "riscv64-unknown-elf-gcc", "riscv64-unknown-elf-objcopy",
               "riscv64-unknown-elf-objdump")


def need_toolchain() -> None:
    """Called in each test body, so that in CI a missing tool FAILS the test (not errors)."""
    for tool in CROSS_TOOLS:
        require_tool(tool)


def tree_snapshot(root):
    """Every file under root with its bytes and mtime: the build must not touch the tree."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def make(*args, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "--no-print-directory", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def committed_elfs() -> list[str]:
    names = sorted(p.name for p in FIRMWARE.glob("*.elf"))
    assert {f"{name}.elf" for name in BUNDLED} <= set(names)
    return names


def assert_same_images(built_dir) -> None:
    """built_dir holds exactly the committed firmware/*.elf, byte for byte."""
    names = committed_elfs()
    assert sorted(p.name for p in built_dir.glob("*.elf")) == names
    for name in names:
        assert (built_dir / name).read_bytes() == (FIRMWARE / name).read_bytes(), f"{name} differs"


def test_rebuilding_the_firmware_reproduces_the_committed_images_byte_for_byte(tmp_path):
    need_toolchain()
    before = tree_snapshot(FIRMWARE)
    make("-C", FIRMWARE, f"OUT={tmp_path}")
    assert_same_images(tmp_path)
    assert tree_snapshot(FIRMWARE) == before


def test_rebuilding_the_teaching_kernel_reproduces_kernel_elf_and_kernel_bin(tmp_path):
    need_toolchain()
    before = tree_snapshot(FIRMWARE)
    make("-C", KERNEL, f"OUT={tmp_path}")
    for name in ("kernel.elf", "kernel.bin"):
        assert (tmp_path / name).read_bytes() == (KERNEL / name).read_bytes(), f"{name} differs"
    assert tree_snapshot(FIRMWARE) == before


def test_the_build_does_not_depend_on_the_checkout_location(tmp_path):
    need_toolchain()
    checkout = tmp_path / "elsewhere" / "firmware"
    shutil.copytree(FIRMWARE, checkout, ignore=shutil.ignore_patterns("*.elf", "*.bin", "*.o",
                                                                      "__pycache__"))
    make("-C", checkout)                                  # OUT=. inside the copy
    make("-C", checkout / "kernel", "OUT=build")          # a relative OUT
    assert_same_images(checkout)
    assert ((checkout / "kernel" / "build" / "kernel.bin").read_bytes()
            == (KERNEL / "kernel.bin").read_bytes())


def committed_images_in(directory):
    """Copies of the committed images, newer than every source so make won't rebuild them."""
    directory.mkdir(parents=True, exist_ok=True)
    future = time.time() + 24 * 3600
    for name in committed_elfs():
        copy = shutil.copy(FIRMWARE / name, directory / name)
        os.utime(copy, (future, future))
    return directory


def test_check_isa_passes_on_the_committed_images(tmp_path):
    need_toolchain()
    out = committed_images_in(tmp_path / "images")
    proc = make("-C", FIRMWARE, "check-isa", f"OUT={out}")
    assert "check-isa: no F/D instructions" in proc.stdout
    assert_same_images(out)                               # it checked, not rebuilt, them


def test_check_isa_rejects_an_image_with_floating_point_instructions(tmp_path):
    need_toolchain()
    out = committed_images_in(tmp_path / "images")
    src = tmp_path / "fp.S"
    src.write_text(".text\n.globl _start\n_start:\n  fadd.d fa0, fa1, fa2\n  fld ft0, 0(a0)\n")
    subprocess.run(["riscv64-unknown-elf-gcc", "-march=rv64imafd", "-mabi=lp64d", "-nostdlib",
                    "-c", "-o", str(out / "hello.elf"), str(src)], check=True, timeout=60)
    future = time.time() + 24 * 3600
    os.utime(out / "hello.elf", (future, future))
    proc = subprocess.run(["make", "--no-print-directory", "-C", str(FIRMWARE), "check-isa",
                           f"OUT={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "check-isa: floating-point instructions found" in proc.stdout + proc.stderr


def test_rebuilding_the_disk_guests_reproduces_them_byte_for_byte(tmp_path):
    need_toolchain()
    disk = FIRMWARE / "disk"
    before = tree_snapshot(FIRMWARE)
    make("-C", disk, f"OUT={tmp_path}")
    names = sorted(p.name for p in disk.glob("*.elf"))
    assert names == ["diskbench.elf", "flush.elf", "journal.elf", "probe.elf", "reboot.elf",
                     "twodisks.elf"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (disk / name).read_bytes(), f"{name} differs"
    assert tree_snapshot(FIRMWARE) == before
