"""Prebuilt bare-metal RV64IMAC guest images (``firmware/*.elf``).

Rebuild with ``make -C firmware``; see README.md in this directory.
"""

import os

# Image name -> one-line description (file: <name>.elf next to this module).
IMAGES = {
    "hello": "M-mode smoke test: banner, CSRs, ecall/illegal-instruction/timer traps, finisher pass",
    "bench": "deterministic ~300M-instruction integer workload (ALU, mul/div, memcpy, CRC32, heapsort)",
    "csrloop": "1,000,000 'csrr t0, mscratch' reads to time privileged-instruction round trips",
    "htif": "riscv-tests style image printing 'htif: hello' via tohost/fromhost and exiting with code 0",
}


def path(name):
    """Absolute path of the prebuilt image *name* (a key of IMAGES)."""
    if name not in IMAGES:
        raise KeyError(name)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".elf")
