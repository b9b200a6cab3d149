"""Virtual disks: host files (or byte ranges of one) given with --disk, checked
before the guest starts; `hvemu disk create` and `hvemu disk info`."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .errors import CantCreateError, HvemuError, NoInputError, UsageError
from .units import parse_size

SECTOR = 512
MAX_DISKS = 8


def parse_bytes(text: str, what: str) -> int:
    """A number of bytes with an optional suffix B, K, M, G or T (below 2^63)."""
    return parse_size(text, what, bare="B")


@dataclass
class DiskSpec:
    path: str
    readonly: bool = False
    offset: int = 0
    size: int | None = None          # None: to the end of the file

    @classmethod
    def parse(cls, text: str) -> DiskSpec:
        """`PATH[,readonly][,offset=BYTES][,size=BYTES]`"""
        parts = text.split(",")
        spec = cls(parts[0])
        if not spec.path:
            raise UsageError(f"--disk {text!r}: no file given")
        for opt in parts[1:]:
            key, _, value = opt.partition("=")
            key = key.strip().lower()
            if key in ("readonly", "ro") and not value:
                spec.readonly = True
            elif key == "offset" and value:
                spec.offset = parse_bytes(value, "disk offset")
            elif key == "size" and value:
                spec.size = parse_bytes(value, "disk size")
            else:
                raise UsageError(f"--disk {text!r}: unknown option {opt!r} "
                                 "(use readonly, offset=BYTES, size=BYTES)")
        return spec


def check_disks(specs: list[DiskSpec]) -> list[DiskSpec]:
    """Refuse, with one line, what cannot be a disk; return the specs with sizes filled in."""
    if len(specs) > MAX_DISKS:
        raise UsageError(f"{len(specs)} disks given: the board has {MAX_DISKS} virtio slots")
    seen = []
    for spec in specs:
        path = spec.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NoInputError(f"disk {path}: no such file (make one with: hvemu disk create "
                             f"{path} 64M)") from None
        except OSError as e:
            raise NoInputError(f"disk {path}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISBLK(st.st_mode):
            raise NoInputError(f"disk {path}: not a regular file")
        mode = os.R_OK if spec.readonly else os.R_OK | os.W_OK
        if not os.access(path, mode):
            raise NoInputError(f"disk {path}: not {'readable' if spec.readonly else 'writable'} "
                             "(add ,readonly for a read-only disk)")
        file_size = st.st_size
        if stat.S_ISBLK(st.st_mode):             # a block device: its size is where it ends
            fd = os.open(path, os.O_RDONLY)
            try:
                file_size = os.lseek(fd, 0, os.SEEK_END)
            finally:
                os.close(fd)
        if spec.offset % SECTOR:
            raise UsageError(f"disk {path}: offset {spec.offset} is not a multiple of {SECTOR}")
        size = file_size - spec.offset if spec.size is None else spec.size
        if size <= 0 or size % SECTOR:      # the file's own size, or the one asked for
            bad = HvemuError if spec.size is None and not spec.offset else UsageError
            raise bad(f"disk {path}: size {size} bytes is not a positive multiple of "
                             f"{SECTOR}")
        if spec.offset + size > file_size:
            raise UsageError(f"disk {path}: range {spec.offset}+{size} runs past the end of "
                             f"the file ({file_size} bytes)")
        spec.size = size
        for other, other_st in seen:
            same = (st.st_dev, st.st_ino) == (other_st.st_dev, other_st.st_ino)
            overlap = spec.offset < other.offset + other.size and other.offset < spec.offset + size
            if same and overlap and not (spec.readonly and other.readonly):
                raise UsageError(f"disk {path}: byte range {spec.offset}-{spec.offset + size - 1} "
                                 f"overlaps another disk on the same file, and one is writable")
        seen.append((spec, st))
    return specs


def create_disk(path: str, size: int) -> None:
    """A sparse raw image of `size` bytes (refuses to overwrite)."""
    if size <= 0 or size % SECTOR:
        raise UsageError(f"disk size {size} is not a positive multiple of {SECTOR} bytes")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise CantCreateError(f"{path}: already exists (not overwritten)") from None
    except OSError as e:
        raise CantCreateError(f"{path}: cannot create ({e.strerror})") from None
    try:
        os.ftruncate(fd, size)
    except (OSError, OverflowError) as e:
        os.close(fd)
        os.unlink(path)
        reason = e.strerror if isinstance(e, OSError) else "too large"
        raise CantCreateError(f"{path}: cannot make a {size}-byte disk ({reason})") from None
    os.close(fd)


def disk_info(path: str) -> dict:
    try:
        st = os.stat(path)
    except OSError as e:
        raise NoInputError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NoInputError(f"{path}: not a regular file")
    return {"path": path, "size": st.st_size, "sectors": st.st_size // SECTOR,
            "allocated": st.st_blocks * 512, "sparse": st.st_blocks * 512 < st.st_size}
