"""Loading guest images into guest-physical memory.

An ELF64 RISC-V image is loaded by its program headers (PT_LOAD at p_paddr, the
tail up to p_memsz zeroed) and starts at e_entry; anything else is a raw binary
loaded at a given address (RAM base by default), like QEMU's `-kernel`/`-bios`.
"""
from __future__ import annotations

import io
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from ..errors import ImageError
from .linux import check_image, parse_header

EM_RISCV = 243
ELF_MAGIC = b"\x7fELF"


@dataclass
class LoadedImage:
    path: str
    kind: str                       # "elf", "raw" or "linux" (a Linux Image)
    entry: int
    low: int                        # lowest and highest guest-physical byte loaded
    high: int
    symbols: dict[str, int] = field(default_factory=dict)


def read_image(path: str | Path) -> bytes:
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{path}: no such file")
    if p.is_dir():
        raise ImageError(f"{path}: is a directory, not a guest image")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise ImageError(f"{path}: empty file")
    return data


def load_image(path: str | Path, memory, raw_address: int | None = None) -> LoadedImage:
    """Load an ELF or raw image into memory (a GuestMemory); ImageError if it can't be."""
    data = read_image(path)
    if data[:4] == ELF_MAGIC:
        return _load_elf(str(path), data, memory)
    addr = memory.ram_base if raw_address is None else raw_address
    linux = parse_header(data)
    if linux is not None:                     # the kernel's BSS reaches past the file end
        check_image(str(path), data, linux)
        size = max(len(data), linux.image_size)
        _check_fits(str(path), memory, addr, size)
        memory.write(addr, data)
        return LoadedImage(str(path), "linux", addr, addr, addr + size - 1)
    _check_fits(str(path), memory, addr, len(data))
    memory.write(addr, data)
    return LoadedImage(str(path), "raw", addr, addr, addr + len(data) - 1)


def _check_fits(path: str, memory, addr: int, size: int) -> None:
    if not memory.contains_ram(addr, size):
        end = memory.ram_base + memory.ram_size
        raise ImageError(
            f"{path}: image needs guest-physical {addr:#x}-{addr + size - 1:#x}, "
            f"which does not fit in RAM {memory.ram_base:#x}-{end - 1:#x} "
            f"({memory.ram_size >> 20} MiB; try a larger --memory)")


def _load_elf(path: str, data: bytes, memory) -> LoadedImage:
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian:
            raise ImageError(f"{path}: not a 64-bit little-endian ELF (RV64 guests only)")
        if elf["e_machine"] != "EM_RISCV" and elf.header["e_machine"] != EM_RISCV:
            raise ImageError(f"{path}: ELF for {elf['e_machine']}, not RISC-V")
        segments = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_memsz"]]
        if not segments:
            raise ImageError(f"{path}: ELF has no loadable segments")
        low, high = None, None
        for seg in segments:
            addr, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
            _check_fits(path, memory, addr, memsz)
            body = seg.data()
            if len(body) != filesz:
                raise ImageError(f"{path}: truncated ELF segment at {addr:#x}")
            memory.write(addr, body + bytes(memsz - filesz))
            low = addr if low is None else min(low, addr)
            high = addr + memsz - 1 if high is None else max(high, addr + memsz - 1)
        symbols = {}
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            for name in ("tohost", "fromhost"):
                found = symtab.get_symbol_by_name(name)
                if found:
                    symbols[name] = found[0]["st_value"]
        return LoadedImage(path, "elf", elf.header["e_entry"], low, high, symbols)
    except ImageError:
        raise
    except (ELFError, ValueError, KeyError, IndexError, OSError, OverflowError,
            struct.error, AssertionError, TypeError, AttributeError) as e:
        raise ImageError(f"{path}: malformed ELF ({type(e).__name__}: {e})") from None


def read_initrd(path: str | Path, ram_size: int) -> bytes:
    """An initrd's bytes: a readable regular file no larger than RAM (checked before
    reading)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(f"--initrd {path}: no such file") from None
    except OSError as e:
        raise ImageError(f"--initrd {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"--initrd {path}: not a regular file")
    if st.st_size > ram_size:
        raise ImageError(f"--initrd {path}: {st.st_size:,} bytes do not fit in "
                         f"{ram_size >> 20} MiB of RAM; give the VM more --memory")
    try:
        with open(p, "rb") as f:
            return f.read(ram_size + 1)
    except OSError as e:
        raise ImageError(f"--initrd {path}: cannot read ({e.strerror})") from None
