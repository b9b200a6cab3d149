"""pytest-benchmark suites for hvemu: short by default, full with HVEMU_BENCH_FULL=1."""
import os

import pytest

FULL = bool(os.environ.get("HVEMU_BENCH_FULL"))


@pytest.fixture
def full() -> bool:
    return FULL
