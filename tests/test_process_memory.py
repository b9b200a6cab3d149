"""The process VM's address space (hvemu/process/mm.py), without a guest program: VMAs as
mmap/munmap/mprotect/mremap/brk leave them, demand paging, the page tables the core
walks, and the bounds that keep a guest from making hvemu allocate without limit."""
from __future__ import annotations

import errno

import pytest

from hvemu import _core
from hvemu.process import abi
from hvemu.process.mm import (
    MMAP_BASE,
    PAGE,
    RAM_BASE,
    TASK_SIZE,
    AddressSpace,
    GuestFault,
    OutOfMemory,
)

RW = abi.PROT_READ | abi.PROT_WRITE
ANON = abi.MAP_PRIVATE | abi.MAP_ANONYMOUS
FETCH, LOAD, STORE = 0, 1, 2


@pytest.fixture
def mm():
    space = AddressSpace(16 << 20)
    vcpu = _core.VCpu(space.memory)
    vcpu.set_mode(0, 0, 8, space.root, False, False)
    space.vcpu = vcpu
    return space


def layout(mm) -> list[tuple[int, int, int]]:
    return [(v.start, v.end, v.prot) for v in mm.vmas]


def test_mmap_places_mappings_top_down_below_the_mmap_base(mm):
    a = mm.mmap(0, 3 * PAGE, RW, ANON, None, 0)
    b = mm.mmap(0, PAGE, RW, ANON, None, 0)
    assert a == MMAP_BASE - 3 * PAGE
    assert b == a - PAGE
    assert layout(mm) == [(b, a + 3 * PAGE, RW)]        # adjacent anonymous VMAs merge


def test_a_free_hint_is_taken_and_a_busy_one_is_not(mm):
    hint = 0x1000_0000
    assert mm.mmap(hint, PAGE, RW, ANON, None, 0) == hint
    assert mm.mmap(hint, PAGE, RW, ANON, None, 0) != hint


def test_map_fixed_replaces_and_fixed_noreplace_refuses(mm):
    a = mm.mmap(0x2000_0000, 4 * PAGE, RW, ANON, None, 0)
    mm.mmap(a + PAGE, PAGE, abi.PROT_READ, ANON | abi.MAP_FIXED, None, 0)
    assert layout(mm) == [(a, a + PAGE, RW), (a + PAGE, a + 2 * PAGE, abi.PROT_READ),
                          (a + 2 * PAGE, a + 4 * PAGE, RW)]
    with pytest.raises(OSError) as e:
        mm.mmap(a, PAGE, RW, ANON | abi.MAP_FIXED_NOREPLACE, None, 0)
    assert e.value.errno == errno.EEXIST


def test_munmap_splits_a_mapping_and_frees_its_pages(mm):
    a = mm.mmap(0, 4 * PAGE, RW, ANON, None, 0)
    mm.write(a, b"x" * 4 * PAGE)                       # all four pages present
    used = mm.frames_used
    mm.munmap(a + PAGE, 2 * PAGE)
    assert layout(mm) == [(a, a + PAGE, RW), (a + 3 * PAGE, a + 4 * PAGE, RW)]
    assert mm.frames_used == used - 2
    with pytest.raises(GuestFault):
        mm.read(a + PAGE, 1)
    assert mm.read(a + 3 * PAGE, 2) == b"xx"


def test_a_page_is_made_present_on_first_touch_and_reads_as_zero(mm):
    a = mm.mmap(0, 16 * PAGE, RW, ANON, None, 0)
    assert mm.pages == {} or all(v < a >> 12 or v >= (a >> 12) + 16 for v in mm.pages)
    assert mm.fault(a + 5 * PAGE + 123, LOAD) == 0
    assert (a >> 12) + 5 in mm.pages
    assert mm.read(a + 5 * PAGE, 8) == bytes(8)


def test_faults_say_why_a_page_cannot_be_reached(mm):
    a = mm.mmap(0, PAGE, abi.PROT_READ, ANON, None, 0)
    assert mm.fault(a, STORE) == abi.SEGV_ACCERR
    assert mm.fault(a, FETCH) == abi.SEGV_ACCERR
    assert mm.fault(a + PAGE, LOAD) == abi.SEGV_MAPERR
    assert mm.fault(TASK_SIZE + 8, LOAD) == abi.SEGV_MAPERR


def test_mprotect_changes_what_the_core_may_do(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON, None, 0)
    mm.write(a, b"data" + bytes(PAGE))                 # both pages present
    vcpu = mm.vcpu
    assert vcpu.translate(a, STORE)[1] == 0
    mm.mprotect(a, PAGE, abi.PROT_READ)
    assert vcpu.translate(a, STORE) == (None, 15)      # a store page fault
    assert vcpu.translate(a, LOAD)[1] == 0
    assert vcpu.translate(a + PAGE, STORE)[1] == 0
    with pytest.raises(OSError) as e:
        mm.mprotect(a, 3 * PAGE, RW)                    # the third page is not mapped
    assert e.value.errno == errno.ENOMEM


def test_the_core_walks_the_runtimes_page_tables(mm):
    a = mm.mmap(0, PAGE, RW, ANON, None, 0)
    mm.write(a + 100, b"hello")
    pa, cause = mm.vcpu.translate(a + 100, LOAD)
    assert cause == 0
    assert pa == (mm.pages[a >> 12] & ~0xFFF) + 100
    assert mm.memory.read(pa, 5) == b"hello"
    assert RAM_BASE <= pa < RAM_BASE + mm.memory.ram_size


def test_mremap_grows_in_place_or_moves_the_pages(mm):
    a = mm.mmap(0x3000_0000, 2 * PAGE, RW, ANON, None, 0)
    mm.write(a, b"first page")
    assert mm.mremap(a, 2 * PAGE, 4 * PAGE, 0, 0) == a          # room after it
    mm.mmap(a + 4 * PAGE, PAGE, RW, ANON | abi.MAP_FIXED, None, 0)
    with pytest.raises(OSError) as e:
        mm.mremap(a, 4 * PAGE, 8 * PAGE, 0, 0)
    assert e.value.errno == errno.ENOMEM
    b = mm.mremap(a, 4 * PAGE, 8 * PAGE, abi.MREMAP_MAYMOVE, 0)
    assert b != a
    assert mm.read(b, 10) == b"first page"             # the frame moved, not a copy
    with pytest.raises(GuestFault):
        mm.read(a, 1)


def test_brk_grows_shrinks_and_stops_at_a_mapping(mm):
    mm.brk_start = mm.brk = 0x50_0000
    assert mm.set_brk(0x50_0000 + 3 * PAGE + 5) == 0x50_0000 + 3 * PAGE + 5
    mm.write(0x50_0000 + 3 * PAGE, b"!")
    mm.mmap(0x50_0000 + 8 * PAGE, PAGE, RW, ANON | abi.MAP_FIXED, None, 0)
    assert mm.set_brk(0x50_0000 + 16 * PAGE) == 0x50_0000 + 3 * PAGE + 5   # refused
    assert mm.set_brk(0x50_0000 + PAGE) == 0x50_0000 + PAGE
    with pytest.raises(GuestFault):
        mm.read(0x50_0000 + 3 * PAGE, 1)
    assert mm.set_brk(0x40_0000) == 0x50_0000 + PAGE                    # below the start


def test_system_call_buffers_are_checked_page_by_page(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON, None, 0)
    mm.munmap(a + PAGE, PAGE)
    mm.write(a + PAGE - 3, b"abc")
    with pytest.raises(GuestFault):
        mm.write(a + PAGE - 3, b"abcd")                  # one byte too far
    with pytest.raises(GuestFault):
        mm.read(-8 & ((1 << 64) - 1), 4)


def test_strings_cross_pages_and_have_a_limit(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON, None, 0)
    mm.write(a + PAGE - 4, b"path/name\0")
    assert mm.read_cstr(a + PAGE - 4) == b"path/name"
    mm.write(a, b"x" * (2 * PAGE))
    with pytest.raises(OSError) as e:
        mm.read_cstr(a, limit=100)
    assert e.value.errno == errno.ENAMETOOLONG


def test_the_memory_limit_is_a_hard_bound(mm):
    a = mm.mmap(0, 64 << 20, RW, ANON | abi.MAP_NORESERVE, None, 0)   # virtual: no cost
    with pytest.raises(OutOfMemory):
        for off in range(0, 64 << 20, PAGE):
            mm.fault(a + off, STORE)
    assert mm.frames_used == mm.nframes


def test_huge_sparse_ranges_cost_no_more_than_their_present_pages(mm):
    a = mm.mmap(0, 100 << 30, abi.PROT_NONE, ANON | abi.MAP_NORESERVE, None, 0)
    mm.mprotect(a, 100 << 30, RW)
    mm.write(a + (50 << 30), b"deep")
    mm.munmap(a, 100 << 30)
    assert mm.vmas == []


def test_too_big_or_misaligned_requests_are_refused(mm):
    for args, err in (((0, 0, RW, ANON, None, 0), errno.EINVAL),
                      ((0, PAGE, RW, ANON, None, 123), errno.EINVAL),
                      ((0, TASK_SIZE * 2, RW, ANON, None, 0), errno.ENOMEM),
                      ((0x1001, PAGE, RW, ANON | abi.MAP_FIXED, None, 0), errno.EINVAL),
                      ((TASK_SIZE - PAGE, 2 * PAGE, RW, ANON | abi.MAP_FIXED, None, 0),
                       errno.ENOMEM)):
        with pytest.raises(OSError) as e:
            mm.mmap(*args)
        assert e.value.errno == err, args
