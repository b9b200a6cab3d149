"""`hvemu disk create/info` and `hvemu boot --disk`: what is refused (one `hvemu:`
line, no traceback, and the exit status of cli.py's table: 64 for a bad command line,
65 for a file that cannot be a disk, 66 for a file that cannot be used, 73 for a disk
that cannot be created), what is accepted, and the device tree a guest with disks gets.

Most refusals run `hvemu.cli.main` in-process (fast); a few run the real command
as a subprocess to check the process-level behaviour too.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess

import fdt
import pytest
from conftest import (
    EXIT_CANTCREAT,
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_USAGE,
    HELLO_ELF,
    run_hvemu,
    stderr_lines,
)

from hvemu import cli
from hvemu.disks import MAX_DISKS, DiskSpec, check_disks
from hvemu.errors import HvemuError
from hvemu.vm import VM, VMConfig

SECTOR = 512
HELLO_DONE = "hello: all tests passed"


def hvemu_main(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    """Run `hvemu ARGS` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))      # not a terminal
    monkeypatch.delenv("HVEMU_DEBUG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (0 if code is None else code), out, err


def assert_one_line_refusal(code: int, err: str, *words: str, status: int = EXIT_USAGE) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1, err
    assert lines[0].startswith("hvemu: "), err
    assert "Traceback" not in err
    assert "internal error" not in err, err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def run(capsys, monkeypatch):
    def go(*args):
        return hvemu_main(capsys, monkeypatch, *args)
    return go


@pytest.fixture
def img(tmp_path):
    """img(name, size=64 KiB) -> the path of a zero-filled file."""
    def make(name: str = "disk.img", size: int = 64 * 1024):
        path = tmp_path / name
        with open(path, "wb") as f:
            f.truncate(size)
        return path
    return make


@pytest.fixture
def unwritable(tmp_path):
    """A regular, readable, non-empty file this process cannot open for writing (mode
    0444; as root, which ignores modes, also the immutable attribute)."""
    path = tmp_path / "locked.img"
    path.write_bytes(bytes(8 * SECTOR))
    path.chmod(0o444)
    chattr = shutil.which("chattr")
    immutable = False
    try:
        if os.access(path, os.W_OK):
            if chattr and subprocess.run([chattr, "+i", str(path)],
                                         capture_output=True).returncode == 0:
                immutable = True
            if os.access(path, os.W_OK):
                pytest.skip("cannot make a file unwritable for this user (root without "
                            "CAP_LINUX_IMMUTABLE)")
        yield path
    finally:
        if immutable:
            subprocess.run([chattr, "-i", str(path)], check=True)
        path.chmod(0o644)


# ---------------------------------------------------------------------------
# hvemu disk create / info
# ---------------------------------------------------------------------------

def test_disk_create_makes_a_sparse_file(run, tmp_path):
    path = tmp_path / "new.img"
    code, out, err = run("disk", "create", path, "64M")
    assert code == 0, err
    st = path.stat()
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 1 << 20            # sparse: (almost) nothing allocated
    assert str(path) in out


@pytest.mark.parametrize("size,nbytes", [("512", 512), ("1K", 1024), ("3m", 3 << 20),
                                         ("1G", 1 << 30), ("2T", 2 << 40)])
def test_disk_create_sizes(run, tmp_path, size, nbytes):
    path = tmp_path / "s.img"
    code, _, err = run("disk", "create", path, size)
    assert code == 0, err
    assert path.stat().st_size == nbytes


def test_disk_create_refuses_to_overwrite(run, tmp_path):
    path = tmp_path / "keep.img"
    path.write_bytes(b"precious" * 64)
    code, _, err = run("disk", "create", path, "1M")
    assert_one_line_refusal(code, err, "exists", status=EXIT_CANTCREAT)
    assert path.read_bytes() == b"precious" * 64


@pytest.mark.parametrize("size", ["0", "100", "513", "1.5M", "abc", "", "10Q", "0x1000",
                                  " 1M", "1M ", "1MB", "1_048_576", "\u0661\u0660\u0662\u0664",
                                  "+1M", "-1M"])
def test_disk_create_refuses_bad_sizes(run, tmp_path, size):
    path = tmp_path / "bad.img"
    code, _, err = run("disk", "create", path, size)
    assert_one_line_refusal(code, err)
    assert not path.exists()


def test_disk_create_in_a_missing_directory(run, tmp_path):
    code, _, err = run("disk", "create", tmp_path / "no" / "such" / "d.img", "1M")
    assert_one_line_refusal(code, err, status=EXIT_CANTCREAT)


def test_disk_create_too_large(run, tmp_path):
    path = tmp_path / "huge.img"
    code, _, err = run("disk", "create", path, "999999999T")    # > 2**63 bytes
    assert_one_line_refusal(code, err)
    assert not path.exists()


def test_disk_info(run, tmp_path):
    path = tmp_path / "i.img"
    with open(path, "wb") as f:
        f.truncate(1 << 20)
        f.seek(4096)
        f.write(b"\x01" * 4096)
    code, out, err = run("disk", "info", path)
    assert code == 0, err
    text = out.replace(",", "")
    assert "1048576 bytes" in text
    assert "2048 sectors" in text
    allocated = path.stat().st_blocks * 512
    assert f"{allocated} bytes allocated" in text
    assert "sparse" in text


def test_disk_info_of_a_full_file_is_not_sparse(run, tmp_path):
    path = tmp_path / "full.img"
    with open(path, "wb") as f:
        f.write(b"\x01" * 8192)
        f.flush()
        os.fsync(f.fileno())
    code, out, _ = run("disk", "info", path)
    assert code == 0
    assert "16 sectors" in out
    assert "sparse" not in out


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_disk_info_refusals(run, tmp_path, what):
    path = tmp_path / "nothing.img" if what == "missing" else tmp_path
    code, _, err = run("disk", "info", path)
    assert_one_line_refusal(code, err, status=EXIT_NOINPUT)


# ---------------------------------------------------------------------------
# hvemu boot --disk: refusals
# ---------------------------------------------------------------------------

def test_missing_disk_file(run, tmp_path):
    code, _, err = run("boot", "hello", "--disk", tmp_path / "absent.img")
    assert_one_line_refusal(code, err, "absent.img", "no such file", status=EXIT_NOINPUT)


def test_disk_is_a_directory(run, tmp_path):
    code, _, err = run("boot", "hello", "--disk", tmp_path)
    assert_one_line_refusal(code, err, "not a regular file", status=EXIT_NOINPUT)


def test_disk_is_a_character_device(run):
    code, _, err = run("boot", "hello", "--disk", "/dev/null")
    assert_one_line_refusal(code, err, "not a regular file", status=EXIT_NOINPUT)


def test_disk_under_proc_is_refused(run):
    code, _, err = run("boot", "hello", "--disk", "/proc/version")   # a size of 0 bytes
    assert_one_line_refusal(code, err, "/proc/version", status=EXIT_DATAERR)


def test_unwritable_disk_is_refused(run, unwritable):
    code, _, err = run("boot", "hello", "--disk", unwritable)
    assert_one_line_refusal(code, err, "writable", status=EXIT_NOINPUT)


def test_unwritable_disk_is_fine_readonly(run, unwritable):
    code, out, err = run("boot", "hello", "--disk", f"{unwritable},readonly")
    assert code == 0, err
    assert HELLO_DONE in out


@pytest.mark.parametrize("opts,words", [
    ("size=1000", ["size 1000", "multiple of 512"]),
    ("size=0", ["size 0"]),
    ("offset=100", ["offset 100", "multiple of 512"]),
    ("offset=1000,size=512", ["offset 1000"]),
    ("offset=64K", ["size 0"]),                            # nothing left after the offset
    ("offset=128K", []),                                   # offset past the end
    ("size=128K", ["past the end"]),
    ("offset=32K,size=33K", ["past the end"]),
])
def test_bad_ranges(run, img, opts, words):
    path = img()
    code, _, err = run("boot", "hello", "--disk", f"{path},{opts}")
    assert_one_line_refusal(code, err, *words)


def test_disk_size_not_a_multiple_of_512(run, img):
    path = img(size=1000)
    code, _, err = run("boot", "hello", "--disk", path)
    assert_one_line_refusal(code, err, "multiple of 512", status=EXIT_DATAERR)


def test_empty_disk_file(run, img):
    code, _, err = run("boot", "hello", "--disk", img(size=0))
    assert_one_line_refusal(code, err, status=EXIT_DATAERR)


@pytest.mark.parametrize("opt", ["foo=1", "readonly=1", "size=", "offset=", "ro=yes", "",
                                 "size=-512", "size=1.5K", "size= 1K", "size=1KB",
                                 "offset=\u0661K"])
def test_unknown_or_malformed_options(run, img, opt):
    code, _, err = run("boot", "hello", "--disk", f"{img()},{opt}")
    assert_one_line_refusal(code, err)


def test_disk_spec_without_a_path(run):
    code, _, err = run("boot", "hello", "--disk", ",readonly")
    assert_one_line_refusal(code, err)


def test_overlapping_writable_ranges(run, img):
    path = img()
    code, _, err = run("boot", "hello", "--disk", f"{path},size=32K",
                       "--disk", f"{path},offset=16K,size=32K")
    assert_one_line_refusal(code, err, "overlaps")


def test_same_file_twice(run, img):
    path = img()
    code, _, err = run("boot", "hello", "--disk", path, "--disk", path)
    assert_one_line_refusal(code, err, "overlaps")


def test_overlap_writable_with_readonly(run, img):
    path = img()
    code, _, err = run("boot", "hello", "--disk", f"{path},readonly",
                       "--disk", f"{path},offset=60K,size=4K")
    assert_one_line_refusal(code, err, "overlaps")


def test_overlap_through_a_hard_link(run, img, tmp_path):
    path = img()
    link = tmp_path / "alias.img"
    os.link(path, link)
    code, _, err = run("boot", "hello", "--disk", f"{path},size=32K",
                       "--disk", f"{link},offset=31K,size=1K")
    assert_one_line_refusal(code, err, "overlaps")


def test_overlap_through_a_symlink(run, img, tmp_path):
    path = img()
    link = tmp_path / "sym.img"
    link.symlink_to(path)
    code, _, err = run("boot", "hello", "--disk", path, "--disk", f"{link},readonly")
    assert_one_line_refusal(code, err, "overlaps")


def test_more_than_eight_disks(run, img):
    path = img(size=16 * SECTOR)
    args = []
    for i in range(MAX_DISKS + 1):
        args += ["--disk", f"{path},offset={i * SECTOR},size={SECTOR}"]
    code, _, err = run("boot", "hello", *args)
    assert_one_line_refusal(code, err, "9 disks")


def test_refusals_as_a_subprocess(img, tmp_path):
    """The real command: exit 66 or 64 and one line, for a missing file and for an overlap."""
    proc = run_hvemu("boot", "hello", "--disk", tmp_path / "absent.img", timeout=30)
    assert proc.returncode == EXIT_NOINPUT
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("hvemu: ") and "absent.img" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    path = img()
    link = tmp_path / "hard.img"
    os.link(path, link)
    proc = run_hvemu("boot", "hello", "--disk", path, "--disk", link, timeout=30)
    assert proc.returncode == EXIT_USAGE
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "overlaps" in lines[0] and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------
# hvemu boot --disk: accepted
# ---------------------------------------------------------------------------

def test_overlapping_readonly_ranges_are_fine(run, img):
    path = img()
    code, out, err = run("boot", "hello", "--disk", f"{path},readonly",
                         "--disk", f"{path},ro,offset=8K,size=16K")
    assert code == 0, err
    assert HELLO_DONE in out


def test_disjoint_writable_ranges_of_one_file_are_fine(run, img, tmp_path):
    path = img()
    link = tmp_path / "again.img"
    os.link(path, link)
    code, out, err = run("boot", "hello", "--disk", f"{path},size=32K",
                         "--disk", f"{link},offset=32K")
    assert code == 0, err
    assert HELLO_DONE in out


def test_eight_disks_are_fine(run, img):
    path = img(size=MAX_DISKS * SECTOR)
    args = []
    for i in range(MAX_DISKS):
        args += ["--disk", f"{path},offset={i * SECTOR},size={SECTOR}"]
    code, out, err = run("boot", "hello", *args)
    assert code == 0, err
    assert HELLO_DONE in out


def test_boot_hello_with_two_disks(img):
    a, b = img("a.img"), img("b.img")
    proc = run_hvemu("boot", "hello", "--disk", a, "--disk", f"{b},readonly", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert HELLO_DONE in proc.stdout
    assert "Traceback" not in proc.stderr
    assert a.stat().st_size == 64 * 1024 and not any(a.read_bytes())


def test_disk_spec_parse():
    assert DiskSpec.parse("x.img") == DiskSpec("x.img")
    assert DiskSpec.parse("x.img,readonly") == DiskSpec("x.img", readonly=True)
    assert DiskSpec.parse("x.img,ro,offset=1K,size=2M") == DiskSpec("x.img", True, 1024, 2 << 20)
    with pytest.raises(HvemuError):
        DiskSpec.parse("x.img,bogus")


def test_check_disks_fills_in_sizes(img):
    path = img()
    specs = check_disks([DiskSpec(str(path), True), DiskSpec(str(path), True, 4096, None)])
    assert [s.size for s in specs] == [64 * 1024, 60 * 1024]


# ---------------------------------------------------------------------------
# The device tree of a VM with disks
# ---------------------------------------------------------------------------

def _device_tree(vm) -> fdt.FDT:
    total = struct.unpack(">I", vm.memory.read(vm.fdt_addr + 4, 4))[0]
    return fdt.parse_dtb(vm.memory.read(vm.fdt_addr, total))


def test_device_tree_lists_the_disks(img):
    a, b = img("a.img"), img("b.img")
    vm = VM(VMConfig(image=str(HELLO_ELF), memory=16 << 20,
                     disks=[DiskSpec.parse(str(a)), DiskSpec.parse(f"{b},readonly")]))
    try:
        tree = _device_tree(vm)
        for slot, base in enumerate((0x10001000, 0x10002000)):
            node = tree.get_node(f"/soc/virtio_mmio@{base:x}")
            assert node.get_property("compatible").value == "virtio,mmio"
            reg = list(node.get_property("reg").data)
            assert reg == [0, base, 0, 0x1000]
            assert node.get_property("interrupts").value == 1 + slot
        assert not tree.exist_node("/soc/virtio_mmio@10003000")
        assert [d.path for d in vm.disks] == [str(a), str(b)]
        assert vm.disks[1].readonly and not vm.disks[0].readonly
    finally:
        vm.close_disks()


def test_device_tree_without_disks_has_no_virtio_nodes():
    vm = VM(VMConfig(image=str(HELLO_ELF), memory=16 << 20))
    tree = _device_tree(vm)
    soc = tree.get_node("/soc")
    assert not [n.name for n in soc.nodes if n.name.startswith("virtio_mmio")]


def test_disks_are_closed_after_a_run(img):
    a = img("a.img")
    vm = VM(VMConfig(image=str(HELLO_ELF), memory=16 << 20, disks=[DiskSpec.parse(str(a))]))
    assert vm.disks[0].fd >= 0
    outcome = vm.run()
    assert outcome.reason == "poweroff" and outcome.exit_code == 0
    assert vm.disks[0].fd == -1


def _open_files() -> set[str]:
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return paths


def test_vm_refusing_a_disk_leaves_no_file_open(img, tmp_path):
    good = img("good.img")
    with pytest.raises(HvemuError):
        VM(VMConfig(image=str(HELLO_ELF), memory=16 << 20,
                    disks=[DiskSpec.parse(str(good)), DiskSpec.parse(str(tmp_path / "no"))]))
    assert str(good) not in _open_files()
