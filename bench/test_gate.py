"""The CI perf gate: host instructions per guest instruction (fast path) and per exit
(Python handlers), counted by callgrind, must stay within the baseline's tolerance
(bench/baseline.json; update with `hvemu bench --update-baseline`)."""
import os
from pathlib import Path

import pytest

from hvemu import benchmark

BASELINE = Path(__file__).resolve().parent / "baseline.json"


def test_no_figure_costs_more_host_instructions_than_the_baseline_allows():
    if not benchmark.valgrind_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install valgrind for the perf gate")
        pytest.skip("valgrind is not installed")
    rows = benchmark.check_gate(BASELINE)
    report = "\n".join(
        f"{r['name']:<28} {r['value']:>12,.2f} per {r['per']:<11} baseline "
        f"{r['baseline']:>12,.2f}  ceiling {r['ceiling']:>12,.2f}  "
        f"{'ok' if r['ok'] else 'REGRESSED'}" for r in rows)
    print("\n" + report)
    assert all(r["ok"] for r in rows), "perf regression:\n" + report
