"""Starting a program as Linux's execve does (fs/binfmt_elf.c, create_elf_tables).

The program's PT_LOAD segments become file-backed VMAs (a PIE at ELF_ET_DYN_BASE), the
part of each beyond its file size zero-filled; the interpreter named by PT_INTERP, if
any, goes top-down in the mmap area and is where the program starts.  The stack holds,
from the top: the program's path (AT_EXECFN), the environment and argument strings, 16
random bytes (AT_RANDOM), then -- 16-byte aligned, at the initial sp -- argc, argv[],
NULL, envp[], NULL and the auxiliary vector.  A page at the top of the address space
holds the signal trampoline (`li a7, 139; ecall`, what Linux's vDSO has for
rt_sigreturn), which signal handlers return to.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from . import abi
from .elf import ET_DYN, ElfImage
from .mm import (
    DYN_BASE,
    PAGE,
    SIGPAGE,
    STACK_SIZE,
    STACK_TOP,
    AddressSpace,
    Vma,
    page_up,
)

SIGRETURN_CODE = struct.pack("<II", 0x08B00893, 0x00000073)    # li a7, 139; ecall
ARG_MAX = 2 << 20               # bytes of argument and environment strings (E2BIG past it)


@dataclass
class Started:
    pc: int
    sp: int
    entry: int          # the program's own entry (AT_ENTRY)
    base: int           # where the interpreter was loaded (AT_BASE), 0 without one
    phdr: int
    brk: int
    auxv: list


def check_arguments(argv: list[bytes], envp: list[bytes], execfn: bytes) -> None:
    """E2BIG when the strings would not fit on a new stack (before execve commits)."""
    strings = sum(len(s) + 1 for s in argv) + sum(len(s) + 1 for s in envp)
    if strings + len(execfn) + 1 > ARG_MAX:
        raise OSError(7, "argument list too long")          # E2BIG


def map_image(mm: AddressSpace, image: ElfImage, bias: int, name: str) -> None:
    """Map image's PT_LOAD segments, displaced by bias."""
    mf = None
    for seg in image.segments:
        start = (seg.vaddr + bias) & ~(PAGE - 1)
        file_end = seg.vaddr + bias + seg.filesz
        end = page_up(seg.vaddr + bias + seg.memsz)
        if mf is None:
            fd = os.open(image.path, os.O_RDONLY)
            try:
                mf = mm.mapped_file(fd, name)
            finally:
                os.close(fd)
        file_top = page_up(file_end) if seg.filesz else start
        if file_top > start:
            mm.add_vma(Vma(start, file_top, seg.prot, abi.MAP_PRIVATE, mf,
                           seg.offset & ~(PAGE - 1), file_end, name))
        if end > file_top:
            mm.add_vma(Vma(file_top, end, seg.prot, abi.MAP_PRIVATE, name=name))


def load(mm: AddressSpace, image: ElfImage, interp: ElfImage | None, argv: list[bytes],
         envp: list[bytes], execfn: bytes, hwcap: int, ids: tuple[int, int, int, int],
         random16: bytes | None = None) -> Started:
    """Lay out a new process in mm (which must be empty); the registers to start it with."""
    bias = 0
    if image.type == ET_DYN:
        bias = DYN_BASE - image.low
    map_image(mm, image, bias, execfn.decode(errors="replace"))
    brk = page_up(image.high + bias)
    mm.brk_start = mm.brk = brk
    base = 0
    if interp is not None:
        span = page_up(interp.high) - interp.low
        base = mm.find_gap(span) - interp.low if interp.type == ET_DYN else 0
        map_image(mm, interp, base, interp.path)
    # the signal trampoline
    mm.add_vma(Vma(SIGPAGE, SIGPAGE + PAGE, abi.PROT_READ | abi.PROT_EXEC, abi.MAP_PRIVATE,
                   name="[vdso]"))
    pa = mm.populate(mm.find(SIGPAGE), SIGPAGE >> 12) & ~0xFFF
    mm.memory.write(pa, SIGRETURN_CODE)
    # the stack
    mm.add_vma(Vma(STACK_TOP - STACK_SIZE, STACK_TOP, abi.PROT_READ | abi.PROT_WRITE,
                   abi.MAP_PRIVATE | abi.MAP_GROWSDOWN, name="[stack]"))
    check_arguments(argv, envp, execfn)
    p = STACK_TOP - 8
    p -= len(execfn) + 1
    execfn_at = p
    mm.write(p, execfn + b"\0")
    env_at = []
    for s in reversed(envp):
        p -= len(s) + 1
        mm.write(p, s + b"\0")
        env_at.append(p)
    env_at.reverse()
    arg_at = []
    for s in reversed(argv):
        p -= len(s) + 1
        mm.write(p, s + b"\0")
        arg_at.append(p)
    arg_at.reverse()
    p &= ~15
    p -= 16
    random_at = p
    mm.write(p, random16 if random16 is not None else os.urandom(16))
    phdr = (image.phdr_vaddr or 0) + bias
    uid, euid, gid, egid = ids
    auxv = [(abi.AT_PHDR, phdr), (abi.AT_PHENT, 56), (abi.AT_PHNUM, image.phnum),
            (abi.AT_PAGESZ, PAGE), (abi.AT_BASE, base), (abi.AT_FLAGS, 0),
            (abi.AT_ENTRY, image.entry + bias), (abi.AT_UID, uid), (abi.AT_EUID, euid),
            (abi.AT_GID, gid), (abi.AT_EGID, egid), (abi.AT_SECURE, 0),
            (abi.AT_RANDOM, random_at), (abi.AT_HWCAP, hwcap), (abi.AT_CLKTCK, 100),
            (abi.AT_MINSIGSTKSZ, abi.MINSIGSTKSZ), (abi.AT_EXECFN, execfn_at),
            (abi.AT_NULL, 0)]
    words = [len(argv), *arg_at, 0, *env_at, 0]
    for k, v in auxv:
        words += [k, v]
    sp = (p - 8 * len(words)) & ~15
    mm.write(sp, struct.pack(f"<{len(words)}Q", *words))
    pc = (interp.entry + base) if interp is not None else image.entry + bias
    return Started(pc=pc, sp=sp, entry=image.entry + bias, base=base, phdr=phdr, brk=brk,
                   auxv=auxv)
