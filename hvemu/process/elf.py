"""Reading a RISC-V Linux executable: the ELF header, program headers and interpreter.

Only what execve(2) looks at (binfmt_elf): the identification bytes, e_machine, e_type,
the entry point and the program headers -- PT_LOAD segments, PT_INTERP and PT_PHDR.
Everything is checked against the file's size before it is used, so a truncated or
hostile file is refused with a message (and, for a guest's execve, an errno) instead
of being half loaded.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass, field

from ..errors import HvemuError

# <sysexits.h>: the codes `hvemu run` ends with when it refuses a program
EX_DATAERR, EX_NOINPUT = 65, 66

EM_RISCV = 243
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4
EF_RISCV_RVE = 0x8
MAX_PHNUM = 256                 # far more than any real program has
PATH_MAX = 4096

MACHINES = {0: "no machine", 2: "SPARC", 3: "x86 (i386)", 8: "MIPS", 20: "PowerPC",
            21: "PowerPC64", 22: "s390", 40: "ARM", 43: "SPARC V9", 50: "IA-64",
            62: "x86-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch"}

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")


class ExecError(HvemuError):
    """A program the process VM cannot start.  `errno` is what a guest's execve(2)
    gets; `exit_code` what `hvemu run` ends with (sysexits: 65 data, 66 no input)."""

    def __init__(self, message: str, err: int = errno.ENOEXEC, exit_code: int = EX_DATAERR):
        super().__init__(message)
        self.errno = err
        self.exit_code = exit_code


@dataclass
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    prot: int           # PROT_READ/WRITE/EXEC bits


@dataclass
class ElfImage:
    path: str           # the host path it was read from
    type: int           # ET_EXEC or ET_DYN
    entry: int
    phoff: int
    phnum: int
    phdr_vaddr: int | None          # where the program headers are in memory (unbiased)
    interp: str | None              # PT_INTERP, e.g. /lib/ld-linux-riscv64-lp64d.so.1
    segments: list[Segment] = field(default_factory=list)
    float_abi: str = "double"

    @property
    def low(self) -> int:
        return min(s.vaddr for s in self.segments) & ~0xFFF

    @property
    def high(self) -> int:
        return max(s.vaddr + s.memsz for s in self.segments)


def _prot(flags: int) -> int:
    return ((flags & PF_R) and 1) | ((flags & PF_W) and 2) | ((flags & PF_X) and 4)


def read_elf(path: str, shown: str | None = None, task_size: int = 1 << 38) -> ElfImage:
    """Parse and check the executable at host path `path` (named `shown` in messages)."""
    name = shown or path
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ExecError(f"{name}: no such file", errno.ENOENT, EX_NOINPUT) from None
    except PermissionError:
        raise ExecError(f"{name}: permission denied", errno.EACCES, EX_NOINPUT) from None
    except OSError as e:
        raise ExecError(f"{name}: cannot open ({e.strerror})", e.errno, EX_NOINPUT) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ExecError(f"{name}: is a directory", errno.EACCES, EX_NOINPUT)
        if not stat.S_ISREG(st.st_mode):
            raise ExecError(f"{name}: not a regular file", errno.EACCES, EX_NOINPUT)
        head = os.pread(fd, 64, 0)
        return _parse(fd, st.st_size, head, name, path, task_size)
    finally:
        os.close(fd)


def _parse(fd: int, size: int, head: bytes, name: str, path: str, task_size: int) -> ElfImage:
    if len(head) < 4 or head[:4] != b"\x7fELF":
        what = "a script (#!)" if head[:2] == b"#!" else "not an ELF file"
        raise ExecError(f"{name}: {what}: hvemu runs RISC-V 64 Linux ELF executables")
    if len(head) < EHDR.size:
        raise ExecError(f"{name}: truncated ELF header ({size} bytes)")
    (ident, e_type, machine, _version, entry, phoff, _shoff, e_flags, _ehsize, phentsize,
     phnum, _shentsize, _shnum, _shstrndx) = EHDR.unpack(head[:EHDR.size])
    klass, data = ident[4], ident[5]
    if data == 2:          # big-endian: the fields above are byte-swapped
        machine = int.from_bytes(head[18:20], "big")
    if machine != EM_RISCV:
        arch = MACHINES.get(machine, f"machine {machine}")
        raise ExecError(f"{name}: an ELF for {arch}, not RISC-V: hvemu runs RISC-V 64 "
                        "Linux programs")
    if klass == 1:
        raise ExecError(f"{name}: a 32-bit RISC-V ELF (RV32): hvemu runs RV64 programs")
    if klass != 2 or data != 1:
        raise ExecError(f"{name}: not a 64-bit little-endian ELF (class {klass}, data {data})")
    if e_type not in (ET_EXEC, ET_DYN):
        kind = {0: "no type", 1: "a relocatable object (.o)", 4: "a core dump"}.get(
            e_type, f"type {e_type}")
        raise ExecError(f"{name}: an ELF of {kind}, not an executable")
    if e_flags & EF_RISCV_RVE:
        raise ExecError(f"{name}: built for RV64E (16 registers), which hvemu does not run")
    if phentsize != PHDR.size or not 0 < phnum <= MAX_PHNUM:
        raise ExecError(f"{name}: bad program headers ({phnum} of {phentsize} bytes)")
    if phoff > size or phnum * PHDR.size > size - phoff:
        raise ExecError(f"{name}: truncated: its program headers lie past the end of the file")
    raw = os.pread(fd, phnum * PHDR.size, phoff)
    image = ElfImage(path=path, type=e_type, entry=entry, phoff=phoff, phnum=phnum,
                     phdr_vaddr=None, interp=None,
                     float_abi={0: "soft", 2: "single", 4: "double", 6: "quad"}[e_flags & 6])
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = \
            PHDR.unpack_from(raw, i * PHDR.size)
        if p_type == PT_LOAD:
            if p_memsz == 0:
                continue
            if p_filesz > p_memsz or p_offset > size or p_filesz > size - p_offset:
                raise ExecError(f"{name}: truncated or inconsistent segment {i} "
                                f"(offset {p_offset:#x}, {p_filesz:#x} bytes of {size:#x})")
            if (p_vaddr - p_offset) & 0xFFF:
                raise ExecError(f"{name}: segment {i} is not page-aligned with its file "
                                "offset", errno.EINVAL)
            if p_vaddr + p_memsz > task_size or p_vaddr + p_memsz < p_vaddr:
                raise ExecError(f"{name}: segment {i} lies outside the user address space "
                                f"({p_vaddr:#x}+{p_memsz:#x})", errno.ENOMEM)
            image.segments.append(Segment(p_vaddr, p_memsz, p_offset, p_filesz, _prot(p_flags)))
        elif p_type == PT_INTERP:
            if p_filesz == 0 or p_filesz > PATH_MAX or p_offset > size or \
                    p_filesz > size - p_offset:
                raise ExecError(f"{name}: bad PT_INTERP")
            text = os.pread(fd, p_filesz, p_offset)
            if b"\0" not in text:
                raise ExecError(f"{name}: PT_INTERP is not NUL-terminated")
            image.interp = os.fsdecode(text[:text.index(b"\0")])
        elif p_type == PT_PHDR:
            image.phdr_vaddr = p_vaddr
    if not image.segments:
        raise ExecError(f"{name}: no loadable segments")
    if image.phdr_vaddr is None:        # the headers inside the first segment that maps them
        for s in image.segments:
            if s.offset <= phoff and phoff + phnum * PHDR.size <= s.offset + s.filesz:
                image.phdr_vaddr = s.vaddr + (phoff - s.offset)
                break
    if image.type == ET_DYN and image.high - image.low > task_size // 4:
        raise ExecError(f"{name}: spans {image.high - image.low:#x} bytes: too large",
                        errno.ENOMEM)
    return image
