"""Debian's riscv64 busybox-static as a real program under `hvemu run`: its shell runs
pipelines of external applets (each a fork and an exec of /proc/self/exe), files are
read and written, and exit statuses come back as a shell sees them."""
from __future__ import annotations

import hashlib
import os
import signal

import pytest
from linuxkit import debian_busybox
from processkit import hvemu_run


@pytest.fixture(scope="module")
def busybox():
    return debian_busybox()


@pytest.fixture
def tree(tmp_path):
    """A small directory tree with known contents."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text("alpha\nbeta\ngamma\n")
    (tmp_path / "a" / "b" / "two.txt").write_text("delta\n")
    (tmp_path / "a" / "b" / "three.log").write_text("epsilon\n")
    (tmp_path / "numbers").write_text("".join(f"{i}\n" for i in range(1, 1001)))
    return tmp_path


def sh(busybox, script: str, cwd, **kw):
    return hvemu_run(busybox, "sh", "-c", script, cwd=cwd, **kw)


def test_the_issue_example_a_pipeline_of_applets(busybox, tree):
    out = sh(busybox, "ls | wc -l", tree)
    assert (out.stdout, out.returncode) == ("2\n", 0), out.stderr


def test_sort_head_tail_and_wc_in_one_pipeline(busybox, tree):
    out = sh(busybox, "sort -rn numbers | head -5 | tail -2 | wc -l; "
                      "cat numbers | grep 7 | wc -l; sort -r a/one.txt | tr a-z A-Z", tree)
    assert out.stdout.splitlines() == ["2", str(sum("7" in str(i) for i in range(1, 1001))),
                                       "GAMMA", "BETA", "ALPHA"], out.stderr


def test_md5sum_of_a_file_matches_the_host(busybox, tmp_path):
    data = hashlib.sha256(b"seed").digest() * 40000          # 1.25 MB
    (tmp_path / "blob.bin").write_bytes(data)
    out = hvemu_run(busybox, "md5sum", "blob.bin", cwd=tmp_path)
    assert out.stdout == f"{hashlib.md5(data).hexdigest()}  blob.bin\n"


def test_find_and_sed(busybox, tree):
    out = sh(busybox, "find a -name '*.txt' | sort; sed -n 's/^\\(b.*\\)a$/<\\1>/p' a/one.txt; "
                      "sed -i 's/delta/DELTA/' a/b/two.txt && cat a/b/two.txt", tree)
    assert out.stdout.splitlines() == ["a/b/two.txt", "a/one.txt", "<bet>", "DELTA"]
    assert (tree / "a" / "b" / "two.txt").read_text() == "DELTA\n"


def test_exit_codes(busybox, tree):
    assert hvemu_run(busybox, "false").returncode == 1
    assert hvemu_run(busybox, "true").returncode == 0
    assert sh(busybox, "exit 7", tree).returncode == 7
    assert sh(busybox, "sh -c 'exit 7'; echo $?; false; echo $?", tree).stdout == "7\n1\n"


def test_a_killed_command_shows_as_128_plus_the_signal(busybox, tree):
    out = sh(busybox, "sh -c 'kill -TERM $$'; echo $?; kill -KILL $$", tree)
    assert out.stdout == f"{128 + signal.SIGTERM}\n"
    assert out.returncode == 128 + signal.SIGKILL


def test_a_shell_script_with_functions_loops_redirections_and_background_jobs(busybox,
                                                                              tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("""
count() { n=0; while read -r line; do n=$((n + 1)); done; echo "$n lines"; }
for i in 1 2 3; do echo "item $i"; done > items.txt
count < items.txt
words=$(cat items.txt | wc -w)
echo "words: $words"
( cd / && pwd )
sleep 0.1 & wait $!
echo "background job ended with $?"
cat <<EOF | sed 's/here/there/'
here document
EOF
echo "${HVEMU_VAR:-unset}" >&2
test -f items.txt && echo "test -f works"
""")
    out = hvemu_run(busybox, "sh", script, cwd=tmp_path,
                    env=dict(os.environ, HVEMU_VAR="from the host"))
    assert out.stdout.splitlines() == ["3 lines", "words: 6", "/",
                                       "background job ended with 0", "there document",
                                       "test -f works"], out.stderr
    assert out.stderr == "from the host\n"
    assert out.returncode == 0


def test_stdin_reaches_the_program(busybox, tmp_path):
    out = hvemu_run(busybox, "wc", "-w", input=b"one two three\nfour\n", cwd=tmp_path)
    assert out.stdout.split() == ["4"]


def test_tar_roundtrip(busybox, tree):
    out = sh(busybox, "tar cf t.tar a && mkdir x && cd x && tar xf ../t.tar && "
                      "cat a/b/two.txt && ls a/b | sort", tree)
    assert out.stdout.splitlines() == ["delta", "three.log", "two.txt"], out.stderr
