"""The fuzz suite: random and structured guests, malformed images and bad command lines,
all in one supervised process (tests/fuzzkit.py), which must finish without a host crash,
a traceback, a hang, an allocation beyond its address-space limit, or the fast path
disagreeing with the reference interpreter.

The test command runs the short mode: a fixed seed, about 150 cases, some 15 s.  A long
run: HVEMU_FUZZ_LONG=1 (50 times the cases, a fresh seed unless HVEMU_FUZZ_SEED is
given; the seed is in the failure message).  Any case reproduces on its own with the
command its failure prints.
"""
from __future__ import annotations

import os
import random
import sys

import pytest
from conftest import REPO
from fuzzkit import KINDS, SHORT, supervise

LONG = os.environ.get("HVEMU_FUZZ_LONG") == "1"
SEED = int(os.environ.get("HVEMU_FUZZ_SEED") or (random.SystemRandom().getrandbits(31)
                                                 if LONG else 20250801))
SCALE = 50.0 if LONG else 1.0
ADDRESS_SPACE = 2 << 30          # the worker's RLIMIT_AS: a bigger allocation fails there
PEAK_RSS = 768 << 20             # and what it may really use at its peak
TIME_LIMIT = 4 * 3600 if LONG else 300    # a hang, not a slow machine: ~15 s is usual
FUZZKIT = REPO / "tests" / "fuzzkit.py"


def worker_env() -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("HVEMU_DEBUG", None)
    return env


def test_fuzzing_finds_no_crash_traceback_hang_allocation_or_engine_disagreement(tmp_path):
    report = tmp_path / "fuzz.jsonl"
    cmd = [sys.executable, str(FUZZKIT), "--seed", str(SEED), "--scale", str(SCALE),
           "--report", str(report)]
    found = supervise(cmd, report, address_space=ADDRESS_SPACE, time_limit=TIME_LIMIT,
                      env=worker_env())
    assert found.problems == [], f"seed {SEED}:\n" + "\n".join(found.problems)
    assert found.status == 0
    done = [r for r in found.records if r.get("event") == "done"]
    for kind in KINDS:                      # every kind ran, as many cases as planned
        assert sum(r["kind"] == kind for r in done) == max(1, round(SHORT[kind] * SCALE))
    assert found.peak_rss < PEAK_RSS, found.peak_rss


# ---- the supervisor catches what it is there for ----

@pytest.mark.parametrize("script, problem", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
     "a host crash: killed by signal 11"),
    ("import time; time.sleep(60)", "a hang: still running after 2 s"),
    ("x = bytearray(3 << 30)", "the worker exited 1"),
], ids=["crash", "hang", "allocation"])
def test_the_supervisor_reports_a_crash_a_hang_and_an_allocation_past_its_limit(
        tmp_path, script, problem):
    report = tmp_path / "r.jsonl"
    found = supervise([sys.executable, "-c", script], report, address_space=ADDRESS_SPACE,
                      time_limit=2, env=worker_env())
    assert len(found.problems) == 1 and found.problems[0].startswith(problem), found.problems
    if "bytearray" in script:
        assert "MemoryError" in found.problems[0]


def test_the_supervisor_reports_a_failed_case_with_how_to_reproduce_it(tmp_path):
    report = tmp_path / "r.jsonl"
    start = {"event": "start", "index": 3, "kind": "bad-cli", "seed": 9}
    done = {"event": "done", "index": 3, "kind": "bad-cli", "ok": False, "detail": "boom",
            "reproduce": "python tests/fuzzkit.py --only 3"}
    script = ("import json, sys\nwith open(sys.argv[1], 'w') as f:\n"
              f"    f.write(json.dumps({start!r}) + '\\n')\n"
              f"    f.write(json.dumps({done!r}) + '\\n')\n"
              "sys.exit(1)\n")
    found = supervise([sys.executable, "-c", script, str(report)], report,
                      address_space=ADDRESS_SPACE, time_limit=30, env=worker_env())
    assert found.problems == ["case 3 (bad-cli): boom [reproduce: python tests/fuzzkit.py "
                              "--only 3]"]
