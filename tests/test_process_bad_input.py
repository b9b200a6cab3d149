"""`hvemu run` refuses what it cannot run with one `hvemu: ...` line and a documented
exit status (64: a bad command line; 65: not a RISC-V 64 Linux executable; 66: a missing
program, interpreter or sysroot) -- never a traceback; a program that crashes ends like
a crashed process."""
from __future__ import annotations

import shutil
import stat
import subprocess

from conftest import require_tool
from processkit import SYSROOT, compile_c, hvemu_run

EX_USAGE, EX_DATAERR, EX_NOINPUT = 64, 65, 66
HELLO = '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }'


def refused(proc, code: int, *words: str) -> str:
    """proc ended with code and said exactly one line, `hvemu: ...`, containing words."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hvemu: "), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert proc.stdout == ""
    return lines[0]


def test_a_file_that_is_not_an_elf(tmp_path):
    prog = tmp_path / "notes.txt"
    prog.write_text("just text\n")
    prog.chmod(0o755)
    refused(hvemu_run(prog), EX_DATAERR, "notes.txt", "not an ELF")


def test_an_empty_file(tmp_path):
    prog = tmp_path / "empty"
    prog.write_bytes(b"")
    refused(hvemu_run(prog), EX_DATAERR, "not an ELF")


def test_an_elf_for_another_architecture():
    host = shutil.which("true")
    refused(hvemu_run(host), EX_DATAERR, "x86-64" if _host_is_x86() else "not RISC-V",
            "not RISC-V")


def _host_is_x86() -> bool:
    import platform
    return platform.machine() in ("x86_64", "AMD64")


def test_a_32_bit_riscv_elf(tmp_path):
    gcc = require_tool("riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf")
    src = tmp_path / "start.S"
    src.write_text(".globl _start\n_start:\n li a7, 93\n li a0, 0\n ecall\n")
    prog = tmp_path / "rv32"
    subprocess.run([gcc, "-march=rv32imac", "-mabi=ilp32", "-nostdlib", "-o", str(prog),
                    str(src)], check=True, capture_output=True)
    refused(hvemu_run(prog), EX_DATAERR, "32-bit RISC-V", "RV64")


def test_a_truncated_elf(tmp_path):
    whole = compile_c(HELLO).read_bytes()
    prog = tmp_path / "truncated"
    prog.write_bytes(whole[:200])
    refused(hvemu_run(prog), EX_DATAERR, "truncated")


def test_an_object_file_is_not_an_executable(tmp_path):
    gcc = require_tool("riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu")
    src = tmp_path / "x.c"
    src.write_text("int f(void) { return 1; }\n")
    obj = tmp_path / "x.o"
    subprocess.run([gcc, "-c", "-o", str(obj), str(src)], check=True)
    refused(hvemu_run(obj), EX_DATAERR, "relocatable", "not an executable")


def test_a_dynamic_program_without_a_sysroot_names_the_missing_interpreter():
    prog = compile_c(HELLO, static=False)
    line = refused(hvemu_run(prog), EX_NOINPUT, "/lib/ld-linux-riscv64-lp64d.so.1", "-L")
    assert "dynamically linked" in line


def test_a_sysroot_without_the_interpreter(tmp_path):
    prog = compile_c(HELLO, static=False)
    refused(hvemu_run(prog, options=("-L", tmp_path)), EX_NOINPUT,
            "/lib/ld-linux-riscv64-lp64d.so.1", str(tmp_path))


def test_a_sysroot_that_does_not_exist(tmp_path):
    prog = compile_c(HELLO, static=False)
    refused(hvemu_run(prog, options=("-L", tmp_path / "nowhere")), EX_NOINPUT,
            "nowhere", "no such directory")


def test_a_program_that_does_not_exist(tmp_path):
    refused(hvemu_run(tmp_path / "missing"), EX_NOINPUT, "missing", "no such file")


def test_a_directory(tmp_path):
    refused(hvemu_run(tmp_path), EX_NOINPUT, "is a directory")


def test_a_script_whose_interpreter_is_a_host_program(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    refused(hvemu_run(script), EX_DATAERR, "/bin/sh", "not RISC-V")


def test_a_program_that_segfaults_ends_with_139_and_one_line():
    prog = compile_c("int main(void) { return *(volatile int *)0; }")
    line = refused(hvemu_run(prog), 139, "SIGSEGV", "read of 0x0")
    assert "Traceback" not in line


def test_a_program_that_executes_garbage_ends_with_sigill():
    prog = compile_c("int main(void) { __asm__ volatile(\".word 0\"); return 0; }")
    refused(hvemu_run(prog), 128 + 4, "SIGILL", "illegal instruction")


def test_bad_options(tmp_path):
    prog = compile_c(HELLO)
    for options, words in ((("-E", "NOEQUALS"), ("-E", "VAR=VALUE")),
                           (("--memory", "lots"), ("--memory", "lots")),
                           (("--memory", "4K"), ("--memory", "at least"))):
        proc = hvemu_run(prog, options=options)
        assert proc.returncode == EX_USAGE and proc.stdout == "", proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("hvemu: "), proc.stderr
        for w in words:
            assert w in lines[0]


def test_a_guest_cannot_reach_hvemus_own_descriptors():
    src = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
int main(void) {
    struct rlimit r; getrlimit(RLIMIT_NOFILE, &r);
    int bad = 0;
    for (long fd = r.rlim_cur; fd < r.rlim_cur + 256; fd++)
        if (write(fd, "x", 1) != -1 || errno != EBADF) bad++;
    printf("fds at or above RLIMIT_NOFILE: %s\n", bad ? "reachable" : "EBADF");
    printf("dup2 onto them: %d %s\n", dup2(1, r.rlim_cur + 3), strerror(errno));
    return 0;
}"""
    proc = hvemu_run(compile_c(src))
    assert proc.stdout.splitlines() == ["fds at or above RLIMIT_NOFILE: EBADF",
                                        "dup2 onto them: -1 Bad file descriptor"]


def test_a_guest_pointer_to_nowhere_is_efault_not_a_crash():
    src = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r = syscall(SYS_write, 1, (void *)0x10, 5);
    printf("write from NULL+16: %ld %s\n", r, strerror(errno));
    r = syscall(SYS_read, 0, (void *)0xffffffffffff0000ul, 5);
    printf("read into a kernel address: %ld %s\n", r, strerror(errno));
    r = syscall(SYS_openat, -100, (void *)1, 0);
    printf("open of a bad path pointer: %ld %s\n", r, strerror(errno));
    return 0;
}"""
    proc = hvemu_run(compile_c(src), input=b"hello")
    assert proc.stdout.splitlines() == ["write from NULL+16: -1 Bad address",
                                        "read into a kernel address: -1 Bad address",
                                        "open of a bad path pointer: -1 Bad address"]


def test_dynamic_program_runs_with_the_sysroot_given():
    assert hvemu_run(compile_c(HELLO, static=False), options=("-L", SYSROOT)).stdout == "hi\n"


# System calls with garbage arguments: small numbers, -1, pointers into a buffer of
# random names, to unmapped memory and past the end of a mapping, random 64-bit values
# (numbers up to 460, implemented or not).  Names contain no '/', so files are made only
# in the working directory.
FUZZ = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
static uint64_t s = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
static const long deny[] = {
    /* what ends the fuzzer or runs something else */
    SYS_exit, SYS_exit_group, SYS_clone, SYS_clone3, SYS_execve, SYS_execveat,
    SYS_rt_sigreturn, SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_tgsigqueueinfo,
    SYS_rt_sigqueueinfo, SYS_pidfd_send_signal,
    /* what unmaps or remaps its own memory, or changes how signals reach it */
    SYS_munmap, SYS_mremap, SYS_mprotect, SYS_mmap, SYS_brk, SYS_madvise,
    SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_sigaltstack, SYS_setitimer,
    SYS_timer_create, SYS_timer_settime,
    /* what blocks it, as it would on Linux */
    SYS_rt_sigsuspend, SYS_rt_sigtimedwait, SYS_futex, SYS_nanosleep, SYS_clock_nanosleep,
    SYS_ppoll, SYS_pselect6, SYS_epoll_pwait, SYS_epoll_pwait2, SYS_wait4, SYS_waitid,
    SYS_pipe2, SYS_flock, SYS_close_range,
    /* what would change the host for the user running the tests */
    SYS_setuid, SYS_setgid, SYS_setreuid, SYS_setresuid, SYS_setregid, SYS_setresgid,
    SYS_setfsuid, SYS_setfsgid, SYS_setgroups, SYS_setsid, SYS_setpgid, SYS_mknodat,
    SYS_fallocate, SYS_fchmod, SYS_fchmodat, SYS_fchownat, SYS_fchown, SYS_utimensat,
    SYS_truncate, SYS_ftruncate, SYS_setrlimit, SYS_prlimit64, SYS_setpriority,
    SYS_sched_setaffinity,
    -1};
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    char *buf = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long calls = 0, errors = 0;
    dup2(1, 200);                        /* the report survives a fuzzed close(1) */
    for (long i = 0; i < n; i++) {
        long nr = rnd() % 460;
        int skip = 0;
        for (int k = 0; deny[k] >= 0; k++) if (deny[k] == nr) skip = 1;
        if (skip) continue;
        for (int k = 0; k < 256; k++) { char c = 'a' + rnd() % 26; buf[k] = c; }
        buf[rnd() % 64] = 0;
        long a[6];
        for (int k = 0; k < 6; k++) {
            switch (rnd() % 8) {
            case 0: a[k] = 0; break;
            case 1: a[k] = -1; break;
            case 2: a[k] = rnd() % 64; break;
            case 3: a[k] = (long)(buf + rnd() % 4096); break;
            case 4: a[k] = (long)rnd(); break;
            case 5: a[k] = 0x10; break;
            case 6: a[k] = (long)buf + (1 << 16) - 8; break;
            default: a[k] = -(long)(rnd() % 4096); break;
            }
        }
        long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        calls++; errors += r == -1;
    }
    dprintf(200, "survived %ld calls (%ld errors)\n", calls, errors);
    return 0;
}
"""


def test_system_calls_with_garbage_arguments_cannot_crash_hvemu(tmp_path):
    proc = hvemu_run(compile_c(FUZZ), "30000", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("survived ")
    assert "hvemu:" not in proc.stderr and "Traceback" not in proc.stderr
