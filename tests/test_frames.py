"""Guest RAM through a P2M: host frames from the hypervisor's pool on first touch.

A VM's RAM costs the host only the pages something touched; a pool with a limit lets
VMs' RAM add up to more than it holds, and a VM that touches a page the pool cannot
give stops with a clear reason; a reset gives the frames back; two memories sharing a
pool never see each other's bytes.
"""
from __future__ import annotations

import pytest
from conftest import RV
from corekit import add, bne
from hvemu._core import FramePool, GuestMemory

from hvemu.console import Console
from hvemu.vm import VM, VMConfig

RAM = 0x8000_0000
MIB = 1 << 20
PAGE = 4096


def test_untouched_ram_costs_no_frames_and_reads_zero():
    pool = FramePool()
    mem = GuestMemory(RAM, 1 << 30, pool=pool)          # 1 GiB of guest RAM
    assert pool.in_use == 0 and mem.touched_pages == 0
    assert mem.read(RAM + 512 * MIB, 16) == bytes(16)    # reading does not touch
    assert pool.in_use == 0
    mem.write(RAM + 3 * PAGE + 4090, b"abcdefgh")          # across two pages
    assert pool.in_use == 2 * PAGE and mem.touched() == [RAM + 3 * PAGE, RAM + 4 * PAGE]
    assert mem.read(RAM + 3 * PAGE + 4090, 8) == b"abcdefgh"


def test_clearing_gives_the_frames_back_and_ram_reads_zero_again():
    pool = FramePool()
    mem = GuestMemory(RAM, 16 * MIB, pool=pool)
    mem.write(RAM, b"\xff" * (64 * PAGE))
    assert pool.in_use == 64 * PAGE
    mem.clear()
    assert pool.in_use == 0 and mem.touched_pages == 0
    assert mem.read(RAM, 64 * PAGE) == bytes(64 * PAGE)
    mem.write(RAM, b"x")                                  # a reused frame is zero
    assert mem.read(RAM, PAGE) == b"x" + bytes(PAGE - 1)


def test_two_memories_on_one_pool_see_only_their_own_frames():
    pool = FramePool()
    a, b = GuestMemory(RAM, 16 * MIB, pool=pool), GuestMemory(RAM, 16 * MIB, pool=pool)
    a.write(RAM + PAGE, b"canary in A")
    assert b.read(RAM + PAGE, 11) == bytes(11)
    b.write(RAM + PAGE, b"B's own data")
    assert a.read(RAM + PAGE, 11) == b"canary in A"
    assert pool.in_use == 2 * PAGE


def test_a_pool_with_a_limit_refuses_the_frame_past_it():
    pool = FramePool(limit=4 * PAGE)
    mem = GuestMemory(RAM, 16 * MIB, pool=pool)
    mem.write(RAM, bytes(4 * PAGE))
    with pytest.raises(MemoryError):
        mem.write(RAM + 4 * PAGE, b"one page too many")
    assert pool.in_use == 4 * PAGE and pool.available == 0


def page_toucher(pages: int) -> bytes:
    """A guest storing one word into each of `pages` pages, then powering off."""
    return RV.code(RV.lui(RV.T0, 0x40080), RV.slli(RV.T0, RV.T0, 1),   # t0 = 0x8010_0000
                   *RV.li(RV.T1, pages),
                   RV.sw(RV.T1, RV.T0, 0),                     # loop: store a word,
                   RV.lui(RV.T2, 1), add(RV.T0, RV.T0, RV.T2),  # next page,
                   RV.addi(RV.T1, RV.T1, -1),
                   bne(RV.T1, RV.ZERO, -16),                   # until t1 is 0
                   RV.poweroff(0))


def test_a_vm_that_touches_more_than_the_pool_holds_stops_with_a_clear_reason(raw_image):
    pool = FramePool(limit=2 * MIB)
    image = raw_image(page_toucher(4096))                     # 16 MiB worth of pages
    vm = VM(VMConfig(image=str(image), memory=32 * MIB), Console(), pool=pool)
    out = vm.run()
    assert out.reason == "nomem"
    assert "frame pool is exhausted" in out.detail and "2 MiB" in out.detail
    assert pool.in_use == 2 * MIB


def test_the_same_guest_runs_when_its_pages_fit(raw_image):
    pool = FramePool(limit=8 * MIB)
    vm = VM(VMConfig(image=str(raw_image(page_toucher(512))), memory=32 * MIB), Console(),
            pool=pool)
    out = vm.run()
    assert out.reason == "poweroff" and out.exit_code == 0
    assert vm.memory.touched_pages <= 512 + 8                 # its pages, image, device tree


def test_a_reset_gives_the_vms_frames_back(hello_vm):
    pool = hello_vm.memory.pool
    hello_vm.memory.write(RAM + 8 * MIB, bytes(100 * PAGE))
    before = pool.in_use
    hello_vm.reset()
    assert pool.in_use <= before - 100 * PAGE


def _child_touches(mem: GuestMemory) -> None:
    """fork; the child writes a page the parent never touched and one it did, then exits."""
    import os
    pid = os.fork()
    if pid == 0:
        try:
            mem.write(RAM + 5 * PAGE, b"child")
            mem.write(RAM, b"CHILD")
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_forked_process_gets_its_own_copy_of_a_private_pools_memory():
    # the process VM's fork(2) is the host's: parent and child must not share RAM or P2M
    mem = GuestMemory(RAM, 16 * MIB, pool=FramePool())
    mem.write(RAM, b"mine!")
    assert not mem.shared
    _child_touches(mem)
    assert mem.read(RAM, 5) == b"mine!"
    assert mem.touched() == [RAM] and mem.read(RAM + 5 * PAGE, 5) == bytes(5)


def test_a_shared_pools_memory_is_one_memory_across_a_fork():
    # a hosted hypervisor's two processes see the same P2M and the same frames
    pool = FramePool(16 * MIB, shared=True)
    mem = GuestMemory(RAM, 16 * MIB, pool=pool)
    mem.write(RAM, b"mine!")
    assert mem.shared
    _child_touches(mem)
    assert mem.read(RAM, 5) == b"CHILD" and mem.read(RAM + 5 * PAGE, 5) == b"child"
