"""Booting Linux like QEMU's virt machine: the RISC-V `Image` header, the initrd's place
and the command line.

The header is Documentation/arch/riscv/boot-image-header.rst: 64 bytes at the start of
the Image, magic "RISCV\\0\\0\\0" at 0x30 and "RSC\\x05" at 0x38, `image_size` the bytes
the kernel occupies once running (its BSS reaches past the end of the file).  An Image
with an EFI stub is also a PE/COFF file (the header's res3 is the PE offset); its
section table says how long the file must be, so a truncated Image is refused.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ImageError, UsageError

HEADER = struct.Struct("<IIQQQIIQ8sII")
MAGIC, MAGIC2 = b"RISCV\0\0\0", 0x05435352
COMMAND_LINE_SIZE = 1024           # Linux's limit on RISC-V, terminating NUL included
INITRD_MAX_OFFSET = 128 << 20      # QEMU: the initrd at kernel + min(RAM / 2, 128 MiB)


@dataclass
class LinuxImage:
    text_offset: int
    image_size: int                # bytes from the load address the running kernel uses
    version: tuple[int, int]
    efi: bool                      # has an EFI stub (is also a PE/COFF file)


def parse_header(data: bytes) -> LinuxImage | None:
    """The header of a RISC-V Linux Image, or None if data is not one."""
    if len(data) < HEADER.size:
        return None
    (_code0, _code1, text_offset, image_size, _flags, version, _res1, _res2, magic, magic2,
     res3) = HEADER.unpack_from(data)
    if magic != MAGIC or magic2 != MAGIC2:
        return None
    return LinuxImage(text_offset, image_size, (version >> 16, version & 0xFFFF),
                      data[:2] == b"MZ" and res3 != 0)


def check_image(path: str, head: bytes, size: int, image: LinuxImage) -> None:
    """Refuse, with one line, a Linux Image that cannot be complete: head is the start of
    the file (its first 4 KiB hold the PE headers of an EFI stub), size its length."""
    if not image.efi:
        return
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    try:
        if head[pe:pe + 4] != b"PE\0\0":
            raise ImageError(f"{path}: Linux Image with an EFI stub but no PE header at "
                             f"{pe:#x}: truncated or corrupt")
        nsections, _, _, _, opt_size = struct.unpack_from("<HIIIH", head, pe + 6)
        table = pe + 24 + opt_size
        need = max((sum(struct.unpack_from("<II", head, table + 40 * i + 16))
                    for i in range(nsections)), default=0)
    except struct.error:
        raise ImageError(f"{path}: Linux Image whose PE section table is not in its first "
                         f"{len(head)} bytes: truncated or corrupt") from None
    if size < need:
        raise ImageError(f"{path}: truncated Linux Image: the file has {size:,} bytes, "
                         f"its sections need {need:,}")


def initrd_address(kernel_entry: int, ram_size: int) -> int:
    """Where QEMU's virt machine puts the initrd: after the kernel by min(RAM/2, 128 MiB)."""
    return kernel_entry + min(ram_size // 2, INITRD_MAX_OFFSET)


def check_command_line(text: str) -> bytes:
    """The kernel command line as bytes; refused if Linux would truncate it."""
    raw = text.encode()
    if len(raw) >= COMMAND_LINE_SIZE:
        raise UsageError(f"--append: the command line has {len(raw)} bytes; Linux on RISC-V "
                         f"takes at most {COMMAND_LINE_SIZE - 1}")
    if b"\0" in raw:
        raise UsageError("--append: the command line must not contain NUL bytes")
    return raw
