"""The CI perf gate: every figure, divided by its calibration loop, must stay within
the baseline's tolerance (bench/baseline.json; update with `hvemu bench --update-baseline`)."""
from pathlib import Path

from hvemu import benchmark

BASELINE = Path(__file__).resolve().parent / "baseline.json"


def test_no_figure_regressed_against_the_committed_baseline():
    rows = benchmark.check_gate(BASELINE, repeat=3)
    report = "\n".join(
        f"{r['name']:<30} ratio {r['ratio']:.4f}  baseline {r['baseline']:.4f}  "
        f"floor {r['floor']:.4f}  {'ok' if r['ok'] else 'REGRESSED'}" for r in rows)
    print("\n" + report)
    assert all(r["ok"] for r in rows), "perf regression:\n" + report
