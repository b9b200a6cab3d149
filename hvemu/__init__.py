"""hvemu: a hackable trap-and-emulate hypervisor emulator for RISC-V (RV64) guests.

The Cython fast path (`hvemu._core`) runs guest code and walks guest page tables;
the Python control plane (`hvemu.hypervisor`) handles every exit.
"""
__version__ = "0.1.0"
