"""Loading guest images into guest-physical memory.

An ELF64 RISC-V image is loaded by its program headers (PT_LOAD at p_paddr, the
tail up to p_memsz zeroed) and starts at e_entry; anything else is a raw binary
loaded at a given address (RAM base by default), like QEMU's `-kernel`/`-bios`.

What is refused, before anything is read that the check does not need: anything
but a regular file (a FIFO would block, /dev/zero never ends), an empty file, a raw
image that does not fit in RAM (checked on its size) or is shorter than its first
instruction, and an ELF whose headers run past the end of the file, whose segments
have p_filesz > p_memsz, overlap each other or do not fit in RAM, or whose entry
point is in none of them.  Images are copied into guest RAM in bounded chunks.
"""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..errors import ImageError, MissingImageError
from .linux import check_image, parse_header

EM_RISCV = 243
ELF_MAGIC = b"\x7fELF"
PN_XNUM = 0xFFFF
PHDR64_SIZE, SHDR64_SIZE = 56, 64
CHUNK = 1 << 20                      # bytes copied into guest RAM at a time
MAX_RAM_END = 0x8000_0000 + (64 << 30)   # the most RAM --memory can give (64 GiB)
FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass
class LoadedImage:
    path: str
    kind: str                       # "elf", "raw" or "linux" (a Linux Image)
    entry: int
    low: int                        # lowest and highest guest-physical byte loaded
    high: int
    symbols: dict[str, int] = field(default_factory=dict)


def open_image(path: str | Path):
    """The image file opened for reading, and its size; refused (one line) unless it is
    a non-empty regular file.  Opened non-blocking, so a FIFO cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MissingImageError(f"{path}: no such file") from None
    except OSError as e:
        raise MissingImageError(f"{path}: cannot read ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise MissingImageError(f"{path}: is a directory, not a guest image")
        kind = next((name for test, name in FILE_KINDS if test(st.st_mode)), "not a file")
        raise MissingImageError(f"{path}: is {kind}, not a regular file: give an image file")
    if st.st_size == 0:
        os.close(fd)
        raise ImageError(f"{path}: empty file")
    return os.fdopen(fd, "rb"), st.st_size


def read_image(path: str | Path) -> bytes:
    """The whole of a (checked) image file."""
    f, _size = open_image(path)
    with f:
        return f.read()


def load_image(path: str | Path, memory, raw_address: int | None = None) -> LoadedImage:
    """Load an ELF or raw image into memory (a GuestMemory); ImageError if it can't be."""
    f, size = open_image(path)
    with f:
        try:
            head = f.read(4)
        except OSError as e:
            raise MissingImageError(f"{path}: cannot read ({e.strerror})") from None
        if head == ELF_MAGIC:
            return _load_elf(str(path), f, size, memory)
        addr = memory.ram_base if raw_address is None else raw_address
        first = int.from_bytes(head[:2], "little")
        need = 4 if size >= 2 and first & 3 == 3 else 2
        if size < need:
            raise ImageError(f"{path}: {size} byte{'s' if size > 1 else ''}, shorter than one "
                             f"instruction ({need} bytes): not a guest image")
        try:
            start = os.pread(f.fileno(), 4096, 0)      # a Linux Image's headers, if it is one
        except OSError as e:
            raise MissingImageError(f"{path}: cannot read ({e.strerror})") from None
        linux = parse_header(start)
        kind, span = "raw", size
        if linux is not None:                 # the kernel's BSS reaches past the file's end
            check_image(str(path), start, size, linux)
            kind, span = "linux", max(size, linux.image_size)
        _check_fits(str(path), memory, addr, span)
        _copy(str(path), f, 0, size, memory, addr)
    return LoadedImage(str(path), kind, addr, addr, addr + span - 1)


def _copy(path: str, f, offset: int, n: int, memory, addr: int) -> None:
    """n bytes of the file from offset into guest memory at addr, CHUNK at a time."""
    done = 0
    while done < n:
        want = min(CHUNK, n - done)
        try:
            chunk = os.pread(f.fileno(), want, offset + done)
        except OSError as e:
            raise MissingImageError(f"{path}: cannot read ({e.strerror})") from None
        if len(chunk) != want:
            raise ImageError(f"{path}: the file got shorter while it was being loaded")
        memory.write(addr + done, chunk)
        done += want


def _zero(memory, addr: int, n: int) -> None:
    zeros = bytes(min(CHUNK, n))
    while n > 0:
        part = zeros if n >= len(zeros) else zeros[:n]
        memory.write(addr, part)
        addr += len(part)
        n -= len(part)


def _check_fits(path: str, memory, addr: int, size: int, what: str = "image") -> None:
    if memory.contains_ram(addr, size):
        return
    end = memory.ram_base + memory.ram_size
    where = (f"{path}: {what} needs guest-physical {addr:#x}-{addr + size - 1:#x}, "
             f"which does not fit in RAM {memory.ram_base:#x}-{end - 1:#x} "
             f"({memory.ram_size >> 20} MiB")
    if memory.ram_base <= addr and addr + size <= MAX_RAM_END:
        raise ImageError(where + "; try a larger --memory)")
    raise ImageError(where + f"; RAM is {memory.ram_base:#x} up to at most "
                     f"{MAX_RAM_END - 1:#x}, so no --memory can hold it)")


def _malformed(path: str, why: str) -> ImageError:
    return ImageError(f"{path}: malformed ELF: {why}")


def _load_elf(path: str, f, size: int, memory) -> LoadedImage:
    try:
        elf = ELFFile(f)
        if elf.elfclass != 64 or not elf.little_endian:
            raise ImageError(f"{path}: not a 64-bit little-endian ELF (RV64 guests only)")
        if elf["e_machine"] != "EM_RISCV" and elf.header["e_machine"] != EM_RISCV:
            raise ImageError(f"{path}: ELF for {elf['e_machine']}, not RISC-V")
        segments = _load_segments(path, elf, size)
        if not segments:
            raise ImageError(f"{path}: ELF has no loadable segments (no PT_LOAD with p_memsz "
                             "above 0)")
        _check_layout(path, elf.header["e_entry"], segments)
        for index, seg in segments:
            _check_fits(path, memory, seg["p_paddr"], seg["p_memsz"], f"ELF segment {index}")
        for _, seg in segments:
            addr, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
            _copy(path, f, seg["p_offset"], filesz, memory, addr)
            _zero(memory, addr + filesz, memsz - filesz)
        low = min(seg["p_paddr"] for _, seg in segments)
        high = max(seg["p_paddr"] + seg["p_memsz"] - 1 for _, seg in segments)
        symbols = _htif_symbols(path, elf, size)
        return LoadedImage(path, "elf", elf.header["e_entry"], low, high, symbols)
    except ImageError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, OSError, OverflowError,
            struct.error, AssertionError, TypeError, AttributeError) as e:
        raise _malformed(path, f"{type(e).__name__}: {e}") from None


def _load_segments(path: str, elf: ELFFile, size: int) -> list:
    """(index, program header) of each PT_LOAD with p_memsz > 0, checked against the file."""
    h = elf.header
    phnum, phoff = h["e_phnum"], h["e_phoff"]
    if phnum == PN_XNUM:
        raise _malformed(path, "e_phnum is 0xffff (PN_XNUM: extended numbering, the count "
                         "kept in section 0), which no guest image needs")
    if phnum == 0:
        raise ImageError(f"{path}: ELF has no program headers (e_phnum 0): nothing to load "
                         "(an object file, not a linked image?)")
    if h["e_phentsize"] != PHDR64_SIZE:
        raise _malformed(path, f"e_phentsize {h['e_phentsize']}, not {PHDR64_SIZE}")
    if phoff + phnum * PHDR64_SIZE > size:
        raise _malformed(path, f"{phnum} program headers at e_phoff {phoff:#x} run past the "
                         f"end of the file ({size} bytes)")
    loads = []
    for index in range(phnum):
        seg = elf.get_segment(index)
        if seg["p_type"] != "PT_LOAD":
            continue
        filesz, memsz, offset = seg["p_filesz"], seg["p_memsz"], seg["p_offset"]
        if filesz > memsz:
            raise _malformed(path, f"segment {index} has p_filesz {filesz:#x} larger than "
                             f"p_memsz {memsz:#x}")
        if offset + filesz > size:
            raise _malformed(path, f"segment {index}'s {filesz:#x} file bytes at p_offset "
                             f"{offset:#x} run past the end of the file ({size} bytes)")
        if memsz:
            loads.append((index, seg))
    return loads


def _check_layout(path: str, entry: int, segments: list) -> None:
    """No two segments overlap in guest-physical memory; the entry point is in one."""
    spans = sorted((seg["p_paddr"], seg["p_paddr"] + seg["p_memsz"], index)
                   for index, seg in segments)
    for (_, end, i), (nstart, nend, j) in zip(spans, spans[1:], strict=False):
        if nstart < end:
            a, b = sorted((i, j))
            raise ImageError(f"{path}: ELF segments {a} and {b} overlap at guest-physical "
                             f"{nstart:#x}-{min(end, nend) - 1:#x}")
    if not any(start <= entry < end for start, end, _ in spans):
        raise ImageError(f"{path}: entry point {entry:#x} is outside every loaded segment "
                         f"({', '.join(f'{s:#x}-{e - 1:#x}' for s, e, _ in spans)})")


def _htif_symbols(path: str, elf: ELFFile, size: int) -> dict[str, int]:
    """tohost/fromhost from .symtab, read symbol by symbol (memory does not grow with it)."""
    h = elf.header
    if not h["e_shoff"]:
        return {}
    if h["e_shentsize"] != SHDR64_SIZE:
        raise _malformed(path, f"e_shentsize {h['e_shentsize']}, not {SHDR64_SIZE}")
    count = elf.num_sections()
    if h["e_shoff"] + count * SHDR64_SIZE > size:
        raise _malformed(path, f"{count} section headers at e_shoff {h['e_shoff']:#x} run "
                         f"past the end of the file ({size} bytes)")
    symtab = next((s for s in elf.iter_sections() if s.name == ".symtab"), None)
    if symtab is None:
        return {}
    if symtab["sh_offset"] + symtab["sh_size"] > size:
        raise _malformed(path, ".symtab runs past the end of the file")
    wanted = {"tohost", "fromhost"}
    symbols = {}
    for sym in symtab.iter_symbols():
        if sym.name in wanted and sym.name not in symbols:
            symbols[sym.name] = sym["st_value"]
            if len(symbols) == len(wanted):
                break
    return symbols


def read_initrd(path: str | Path, ram_size: int) -> bytes:
    """An initrd's bytes: a non-empty regular file no larger than RAM (checked before it
    is read)."""
    try:
        f, size = open_image(path)
    except ImageError as e:
        raise type(e)(f"--initrd {e}") from None
    with f:
        if size > ram_size:
            raise ImageError(f"--initrd {path}: {size:,} bytes do not fit in "
                             f"{ram_size >> 20} MiB of RAM; give the VM more --memory")
        try:
            return f.read(size)
        except OSError as e:
            raise MissingImageError(f"--initrd {path}: cannot read ({e.strerror})") from None
