"""`hvemu run` runs real RISC-V Linux programs: C compiled at test time with Debian's
riscv64-linux-gnu-gcc, statically linked (glibc) and dynamically linked against the cross
sysroot (`-L /usr/riscv64-linux-gnu`), and statically against Debian's riscv64 musl.
Each test is a program and what it must print."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from processkit import SYSROOT, compile_c, hvemu_run

# glibc static, glibc dynamic (against the cross sysroot), musl static
LINKAGES = ["static", "dynamic", "musl"]


def run_c(source: str, *args, linkage: str = "static", options=(), **kw):
    prog = compile_c(source, static=linkage != "dynamic",
                     libc="musl" if linkage == "musl" else "glibc")
    if linkage == "dynamic":
        options = ("-L", SYSROOT, *options)
    return hvemu_run(prog, *args, options=options, **kw)


def hvemu_lines(proc) -> list[str]:
    """What hvemu itself said on stderr (its lines start with `hvemu:`)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("hvemu:")]


# ---------------------------------------------------------------------------
# start-up: argv, the environment, the auxiliary vector, the exit status
# ---------------------------------------------------------------------------

ARGS_ENV = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    const char *a = getenv("HV_A"), *b = getenv("HV_B");
    printf("HV_A=%s HV_B=%s\n", a ? a : "(unset)", b ? b : "(unset)");
    return argc;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_arguments_environment_and_exit_status_are_the_programs(linkage):
    env = dict(os.environ, HV_B="from-the-host")
    out = run_c(ARGS_ENV, "one", "two words", "--help", linkage=linkage,
                options=("-E", "HV_A=set by -E"), env=env)
    assert out.stdout == ("argv[1]=one\nargv[2]=two words\nargv[3]=--help\n"
                          "HV_A=set by -E HV_B=from-the-host\n")
    assert out.returncode == 4                 # argc, as the program's exit status


def test_U_removes_a_variable_and_0_sets_argv0():
    src = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("%s %s\n", argv[0], getenv("HV_GONE") ? "present" : "removed");
    return 0;
}"""
    out = run_c(src, options=("-U", "HV_GONE", "-0", "my-name"),
                env=dict(os.environ, HV_GONE="1"))
    assert out.stdout == "my-name removed\n"


AUXV = r"""
#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/auxv.h>
extern char _start[];
int main(int argc, char **argv) {
    unsigned long hw = getauxval(AT_HWCAP);
    printf("pagesz %lu\n", getauxval(AT_PAGESZ));
    printf("hwcap");
    for (char c = 'a'; c <= 'z'; c++) if (hw & (1ul << (c - 'a'))) printf(" %c", c);
    printf("\n");
    printf("entry is _start: %d\n", getauxval(AT_ENTRY) == (unsigned long)_start);
    const Elf64_Phdr *ph = (const Elf64_Phdr *)getauxval(AT_PHDR);
    int loads = 0;
    for (unsigned long i = 0; i < getauxval(AT_PHNUM); i++) loads += ph[i].p_type == PT_LOAD;
    printf("phent %lu, PT_LOADs found through AT_PHDR: %d\n", getauxval(AT_PHENT), loads > 0);
    printf("ids match: %d\n", getauxval(AT_UID) == getuid() && getauxval(AT_EGID) == getegid());
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    int nonzero = 0; for (int i = 0; i < 16; i++) nonzero |= r[i];
    printf("random bytes: %d\n", nonzero != 0);
    printf("execfn is argv[0]: %d\n", strcmp((char *)getauxval(AT_EXECFN), argv[0]) == 0);
    printf("interpreter base: %s\n", getauxval(AT_BASE) ? "set" : "none");
    printf("clock ticks %lu, secure %lu\n", getauxval(AT_CLKTCK), getauxval(AT_SECURE));
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_the_auxiliary_vector_is_what_linux_gives(linkage):
    out = run_c(AUXV, linkage=linkage)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "pagesz 4096",
        "hwcap a c d f i m",                   # RV64IMAFDC
        "entry is _start: 1",
        "phent 56, PT_LOADs found through AT_PHDR: 1",
        "ids match: 1",
        "random bytes: 1",
        "execfn is argv[0]: 1",
        f"interpreter base: {'set' if linkage == 'dynamic' else 'none'}",
        "clock ticks 100, secure 0",
    ]


def test_a_pie_loads_and_runs():
    src = r"""
#include <stdio.h>
static int data = 41;
int main(void) { printf("pie: %d, code at %s\n", data + 1,
                        (unsigned long)main > 0x100000000ul ? "high" : "low"); return 0; }"""
    prog = compile_c(src, static=False, flags=("-O2", "-fPIE", "-pie"))
    out = hvemu_run(prog, options=("-L", SYSROOT))
    assert out.stdout == "pie: 42, code at high\n"


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_status_passes_through(code):
    src = "#include <stdlib.h>\nint main(int c, char **v) { exit(atoi(v[1])); }"
    assert run_c(src, str(code)).returncode == code


def test_stdin_stdout_and_stderr_are_the_programs():
    src = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    char buf[64]; ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) write(1, buf, n);
    fprintf(stderr, "to stderr\n");
    printf("isatty(0)=%d\n", isatty(0));
    return 0;
}"""
    out = run_c(src, input=b"line one\nline two\n")
    assert out.stdout == "line one\nline two\nisatty(0)=0\n"
    assert out.stderr == "to stderr\n"


def test_the_working_directory_is_the_programs(tmp_path):
    src = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { char b[4096]; printf("%s\n", getcwd(b, sizeof b)); chdir("sub");
                 printf("%s\n", getcwd(b, sizeof b)); return 0; }"""
    (tmp_path / "sub").mkdir()
    out = run_c(src, cwd=tmp_path)
    real = os.path.realpath(tmp_path)
    assert out.stdout == f"{real}\n{real}/sub\n"


# ---------------------------------------------------------------------------
# files and directories
# ---------------------------------------------------------------------------

FILES = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>
int main(void) {
    int fd = open("f.txt", O_CREAT | O_WRONLY | O_TRUNC, 0640);
    write(fd, "0123456789", 10);
    struct iovec v[2] = {{"abc", 3}, {"def", 3}};
    printf("writev %zd\n", writev(fd, v, 2));
    pwrite(fd, "XY", 2, 4);
    close(fd);
    char buf[32] = {0};
    fd = open("f.txt", O_RDONLY);
    printf("lseek %ld\n", (long)lseek(fd, 2, SEEK_SET));
    printf("read %zd: %.*s\n", read(fd, buf, 5), 5, buf);
    printf("pread %zd: %.3s\n", pread(fd, buf, 3, 13), buf);
    char a[4] = {0}, b[4] = {0};
    struct iovec r[2] = {{a, 3}, {b, 3}};
    lseek(fd, 0, SEEK_SET);
    printf("readv %zd: %s|%s\n", readv(fd, r, 2), a, b);
    struct stat st; fstat(fd, &st);
    printf("size %ld mode %o regular %d\n", (long)st.st_size, st.st_mode & 0777,
           S_ISREG(st.st_mode));
    close(fd);
    printf("read after close: %zd errno %s\n", read(fd, buf, 1), strerror(errno));
    printf("fcntl dup: %d\n", fcntl(0, F_DUPFD, 10));
    printf("open missing: %d %s\n", open("nope/x", O_RDONLY), strerror(errno));
    truncate("f.txt", 4);
    stat("f.txt", &st); printf("truncated to %ld\n", (long)st.st_size);
    rename("f.txt", "g.txt");
    printf("renamed: %d %d\n", access("f.txt", F_OK), access("g.txt", R_OK | W_OK));
    printf("unlink %d, again %d %s\n", unlink("g.txt"), unlink("g.txt"), strerror(errno));
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_file_io(tmp_path, linkage):
    out = run_c(FILES, linkage=linkage, cwd=tmp_path)
    assert out.stdout.splitlines() == [
        "writev 6",
        "lseek 2",
        "read 5: 23XY6",
        "pread 3: def",
        "readv 6: 012|3XY",
        "size 16 mode 640 regular 1",
        "read after close: -1 errno Bad file descriptor",
        "fcntl dup: 10",
        "open missing: -1 No such file or directory",
        "truncated to 4",
        "renamed: -1 0",
        "unlink 0, again -1 No such file or directory",
    ]
    assert not list(tmp_path.iterdir())


DIRS = r"""
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }
int main(void) {
    mkdir("d", 0755); mkdir("d/sub", 0700);
    close(creat("d/one", 0644)); close(creat("d/two", 0644));
    symlink("one", "d/link");
    DIR *dir = opendir("d"); struct dirent *e; char *names[16]; int n = 0;
    while ((e = readdir(dir))) {
        char t = e->d_type == DT_DIR ? 'd' : e->d_type == DT_LNK ? 'l'
               : e->d_type == DT_REG ? 'f' : '?';
        names[n] = malloc(64); snprintf(names[n++], 64, "%s:%c", e->d_name, t);
    }
    closedir(dir);
    qsort(names, n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) printf("%s ", names[i]); printf("\n");
    char buf[64] = {0}; readlink("d/link", buf, sizeof buf); printf("link -> %s\n", buf);
    struct stat st; lstat("d/link", &st); printf("lstat: link %d\n", S_ISLNK(st.st_mode));
    stat("d/link", &st); printf("stat: regular %d\n", S_ISREG(st.st_mode));
    printf("rmdir non-empty: %d %s\n", rmdir("d"), strerror(errno));
    printf("mkdir existing: %d %s\n", mkdir("d", 0755), strerror(errno));
    unlink("d/link"); unlink("d/one"); unlink("d/two"); rmdir("d/sub");
    printf("rmdir: %d\n", rmdir("d"));
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_directories(tmp_path, linkage):
    out = run_c(DIRS, linkage=linkage, cwd=tmp_path)
    assert out.stdout.splitlines() == [
        "..:d .:d link:l one:f sub:d two:f ",          # strcmp order
        "link -> one",
        "lstat: link 1",
        "stat: regular 1",
        "rmdir non-empty: -1 Directory not empty",
        "mkdir existing: -1 File exists",
        "rmdir: 0",
    ]


def test_proc_self_exe_is_the_program_not_hvemu():
    src = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { char b[4096] = {0}; readlink("/proc/self/exe", b, sizeof b - 1);
                 printf("%s\n", b); return 0; }"""
    prog = compile_c(src)
    assert hvemu_run(prog).stdout == f"{os.path.realpath(prog)}\n"


# ---------------------------------------------------------------------------
# memory: brk, mmap, munmap, mprotect, mremap
# ---------------------------------------------------------------------------

MEMORY = r"""
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
static sigjmp_buf jb;
static volatile int last_sig;
static void on_segv(int s, siginfo_t *si, void *u) { last_sig = s; siglongjmp(jb, si->si_code); }
static int faults(volatile char *p, int write) {
    int code = sigsetjmp(jb, 1);
    if (code) return code;
    if (write) *p = 1; else (void)*p;
    return 0;
}
int main(void) {
    struct sigaction sa = {0}; sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGBUS, &sa, 0);
    char *b0 = (char *)syscall(SYS_brk, 0);       /* brk itself: musl has no sbrk(n) */
    int grew = (char *)syscall(SYS_brk, b0 + (1 << 20)) == b0 + (1 << 20);
    memset(b0, 0x5a, 1 << 20);
    int readable = b0[(1 << 20) - 1] == 0x5a;
    int back = (char *)syscall(SYS_brk, b0) == b0;
    printf("brk grows: %d, the heap is memory: %d, brk shrinks: %d\n", grew, readable, back);
    size_t big = 64 << 20;
    char *m = mmap(0, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("fresh pages are zero: %d\n", m[0] == 0 && m[big - 1] == 0);
    for (size_t i = 0; i < big; i += 4096) m[i] = (char)(i >> 12);
    long sum = 0; for (size_t i = 0; i < big; i += 4096) sum += (unsigned char)m[i];
    printf("64 MiB touched, sum %ld\n", sum);
    m = mremap(m, big, 2 * big, MREMAP_MAYMOVE);
    printf("mremap keeps data: %d, new half zero: %d\n", m[4096 * 7] == 7, m[2 * big - 1] == 0);
    mprotect(m, 4096, PROT_READ);
    printf("write to PROT_READ: si_code %d; read: %d\n", faults(m, 1), faults(m, 0));
    munmap(m, 2 * big);
    printf("read of unmapped: si_code %d\n", faults(m, 0));
    char *fixed = mmap(m, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("MAP_FIXED at the hint: %d\n", fixed == m);
    int fd = open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (int i = 0; i < 3 * 4096 - 100; i++) write(fd, &"abcdefghij"[i % 10], 1);
    char *f = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096);
    printf("file mapping at offset 4096: %.5s\n", f);
    f[0] = 'Z';
    char c; pread(fd, &c, 1, 4096);
    printf("private: the file keeps %c; the last page past EOF reads 0: %d\n", c,
           f[2 * 4096 - 50] == 0);
    int code = faults(f + 2 * 4096, 0);
    printf("a page wholly past EOF: %s, si_code %d\n", last_sig == SIGBUS ? "SIGBUS" : "?", code);
    printf("madvise(DONTNEED) zeroes: ");
    m[0] = 9; madvise(m, 4096, MADV_DONTNEED); printf("%d\n", m[0]);
    printf("NULL is unmapped: si_code %d\n", faults(0, 0));
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_brk_mmap_munmap_mprotect_mremap(tmp_path, linkage):
    out = run_c(MEMORY, linkage=linkage, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "brk grows: 1, the heap is memory: 1, brk shrinks: 1",
        "fresh pages are zero: 1",
        f"64 MiB touched, sum {sum(i & 0xff for i in range(16384))}",
        "mremap keeps data: 1, new half zero: 1",
        "write to PROT_READ: si_code 2; read: 0",     # SEGV_ACCERR
        "read of unmapped: si_code 1",                # SEGV_MAPERR
        "MAP_FIXED at the hint: 1",
        "file mapping at offset 4096: ghija",
        "private: the file keeps g; the last page past EOF reads 0: 1",
        "a page wholly past EOF: SIGBUS, si_code 2",                # BUS_ADRERR
        "madvise(DONTNEED) zeroes: 0",
        "NULL is unmapped: si_code 1",
    ]


def test_memory_costs_the_host_only_where_touched_and_execve_gives_it_back():
    src = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static long rss_mib(void) {        /* the host's figure: /proc/self is hvemu's process */
    FILE *f = fopen("/proc/self/status", "r"); char l[256]; long v = -1;
    while (fgets(l, sizeof l, f)) if (!strncmp(l, "VmRSS:", 6)) v = atol(l + 6);
    fclose(f); return v / 1024;
}
int main(int argc, char **argv) {
    if (argc > 1) { printf("%ld %s %s %s\n", rss_mib(), argv[1], argv[2], argv[3]); return 0; }
    long before = rss_mib();
    volatile char *p = malloc(256 << 20);
    long untouched = rss_mib();
    for (long i = 0; i < (256 << 20); i += 4096) p[i] = 1;
    char a[32], b[32], c[32];
    snprintf(a, sizeof a, "%ld", before); snprintf(b, sizeof b, "%ld", untouched);
    snprintf(c, sizeof c, "%ld", rss_mib());
    execl("/proc/self/exe", "rss", a, b, c, (char *)0);
    return 1;
}"""
    out = run_c(src)
    after_exec, before, untouched, touched = map(int, out.stdout.split())
    assert untouched - before < 16             # a 256 MiB malloc costs nothing until touched
    assert touched - before >= 250             # touching it costs the host 256 MiB
    assert after_exec - before < 32            # execve gave it back


def test_memory_beyond_the_limit_kills_the_program_not_hvemu():
    src = r"""
#include <stdio.h>
#include <sys/mman.h>
int main(void) {
    char *m = mmap(0, 1ul << 30, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("mapped\n"); fflush(stdout);
    for (unsigned long i = 0; i < (1ul << 30); i += 4096) m[i] = 1;
    printf("not reached\n");
    return 0;
}"""
    out = run_c(src, options=("--memory", "64M"))
    assert out.stdout == "mapped\n"
    assert out.returncode == 128 + signal.SIGKILL
    lines = hvemu_lines(out)
    assert len(lines) == 1 and "out of memory" in lines[0] and "64 MiB" in lines[0]
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------

SIGNALS = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/time.h>
static volatile int got, depth_seen, on_alt;
static char *alt;
static void handler(int s) { got = s; }
static void info(int s, siginfo_t *si, void *uc) {
    ucontext_t *u = uc;
    printf("SA_SIGINFO: sig %d from pid %s, code %d, uc_sigmask has it: %d\n", si->si_signo,
           si->si_pid == getpid() ? "self" : "other", si->si_code,
           sigismember(&u->uc_sigmask, s));
}
static void nested(int s) { int x; on_alt = (char *)&x >= alt && (char *)&x < alt + 65536; }
static void ill(int s, siginfo_t *si, void *uc) {
    ucontext_t *u = uc;
    printf("SIGILL at the instruction: %d\n", si->si_addr == (void *)u->uc_mcontext.__gregs[0]);
    u->uc_mcontext.__gregs[0] += 4;               /* resume after it */
}
int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    signal(SIGUSR1, handler);
    raise(SIGUSR1);
    printf("handler ran: %d\n", got == SIGUSR1);
    struct sigaction sa = {0};
    sa.sa_sigaction = info; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, 0);
    kill(getpid(), SIGUSR2);
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    got = 0; raise(SIGUSR1);
    sigset_t pend; sigpending(&pend);
    printf("blocked: not run %d, pending %d\n", got == 0, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &set, 0);
    printf("unblocked: run %d\n", got == SIGUSR1);
    alt = malloc(65536);
    stack_t ss = {.ss_sp = alt, .ss_size = 65536};
    sigaltstack(&ss, 0);
    sa.sa_handler = nested; sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigaction(SIGHUP, &sa, 0);
    raise(SIGHUP);
    printf("SA_ONSTACK ran on the alternate stack: %d\n", on_alt);
    sigaction(SIGHUP, 0, &sa);
    printf("SA_RESETHAND reset it: %d\n", sa.sa_handler == SIG_DFL);
    sa.sa_sigaction = ill; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &sa, 0);
    __asm__ volatile(".word 0xffffffff");
    printf("resumed after SIGILL\n");
    signal(SIGALRM, handler); got = 0;
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, 0);
    pause();
    printf("SIGALRM woke pause: %d\n", got == SIGALRM);
    signal(SIGFPE, handler); got = 0; raise(SIGFPE);
    printf("SIGFPE handler ran: %d\n", got == SIGFPE);
    double x = 1.0; for (int i = 0; i < 10; i++) x = x * 1.5 + 0.25;
    printf("FP state survives: %.4f\n", x);
    signal(SIGTERM, SIG_IGN); raise(SIGTERM);
    printf("ignored SIGTERM\n");
    signal(SIGTERM, SIG_DFL); raise(SIGTERM);
    printf("not reached\n");
    return 0;
}
"""


def _fp_loop() -> float:
    x = 1.0
    for _ in range(10):
        x = x * 1.5 + 0.25
    return x


@pytest.mark.parametrize("linkage", LINKAGES)
def test_signals_with_handlers(linkage):
    out = run_c(SIGNALS, linkage=linkage)
    assert out.stdout.splitlines() == [
        "handler ran: 1",
        "SA_SIGINFO: sig 12 from pid self, code 0, uc_sigmask has it: 0",
        "blocked: not run 1, pending 1",
        "unblocked: run 1",
        "SA_ONSTACK ran on the alternate stack: 1",
        "SA_RESETHAND reset it: 1",
        "SIGILL at the instruction: 1",
        "resumed after SIGILL",
        "SIGALRM woke pause: 1",
        "SIGFPE handler ran: 1",
        f"FP state survives: {_fp_loop():.4f}",
        "ignored SIGTERM",
    ]
    assert out.returncode == 128 + signal.SIGTERM
    assert hvemu_lines(out) == []            # killed by a signal it sent: nothing to say


INTERRUPTED_READ = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
static volatile int got;
static void on_usr1(int s) { got = s; }
int main(int argc, char **argv) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = argc > 1 ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, 0);
    int fds[2]; pipe(fds);
    pid_t parent = getpid();
    if (fork() == 0) {                  /* signal the parent while it waits, then write */
        usleep(200 * 1000); kill(parent, SIGUSR1);
        usleep(200 * 1000); write(fds[1], "data", 4); _exit(0);
    }
    char buf[8] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    printf("handler ran %d; read: %zd %s\n", got == SIGUSR1, n, n < 0 ? strerror(errno) : buf);
    wait(0);
    return 0;
}
"""


@pytest.mark.parametrize("restart", [False, True])
def test_a_signal_interrupts_a_blocking_read_or_restarts_it(restart):
    out = run_c(INTERRUPTED_READ, *(["restart"] if restart else []))
    assert out.stdout == ("handler ran 1; read: 4 data\n" if restart else
                          "handler ran 1; read: -1 Interrupted system call\n")


def test_a_segfault_ends_hvemu_with_139_and_one_line():
    src = "int main(void) { *(volatile int *)8 = 1; return 0; }"
    out = run_c(src)
    assert out.returncode == 139
    lines = hvemu_lines(out)
    assert len(lines) == 1 and "SIGSEGV" in lines[0] and "0x8" in lines[0]
    assert "Traceback" not in out.stderr


def test_abort_ends_with_134():
    out = run_c("#include <stdlib.h>\nint main(void) { abort(); }")
    assert out.returncode == 128 + signal.SIGABRT


SPIN = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile int stop;
static void on_int(int s) { stop = 1; }
int main(int argc, char **argv) {
    if (argc > 1) signal(SIGINT, on_int);
    printf("spinning\n"); fflush(stdout);
    unsigned long n = 0;
    while (!stop) n++;                          /* a compute loop: no system calls */
    printf("handler stopped the loop\n");
    return 3;
}
"""


@pytest.mark.parametrize("handled", [True, False])
def test_a_host_sigint_reaches_a_program_in_a_compute_loop(handled):
    prog = compile_c(SPIN)
    env = dict(os.environ, PYTHONPATH=str(os.path.dirname(os.path.dirname(__file__))))
    args = [sys.executable, "-m", "hvemu.cli", "run", str(prog)] + (["handle"] if handled else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env)
    try:
        assert p.stdout.readline() == b"spinning\n"
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    if handled:
        assert (out, p.returncode) == (b"handler stopped the loop\n", 3), err
    else:
        assert p.returncode == 128 + signal.SIGINT, err
    assert b"Traceback" not in err


# ---------------------------------------------------------------------------
# processes: fork, exec, wait; pipes
# ---------------------------------------------------------------------------

PROCESSES = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    if (argc > 1) {
        printf("exec'd with %s, pid kept: %d\n", argv[1], getpid() == atoi(argv[2]));
        return 42;
    }
    setvbuf(stdout, 0, _IONBF, 0);
    int st;
    pid_t pid = fork();
    if (pid == 0) _exit(3);
    printf("wait4 returns the child: %d\n", waitpid(pid, &st, 0) == pid);
    printf("exit status %d\n", WEXITSTATUS(st));
    pid = fork();
    if (pid == 0) {
        char num[16]; snprintf(num, sizeof num, "%d", getpid());
        execl("/proc/self/exe", "self", "argument", num, (char *)0);
        _exit(99);
    }
    waitpid(pid, &st, 0); printf("exec'd child exit %d\n", WEXITSTATUS(st));
    pid = fork();
    if (pid == 0) { *(volatile int *)0 = 0; _exit(1); }
    waitpid(pid, &st, 0);
    printf("crashed child: signaled %d by %d\n", WIFSIGNALED(st), WTERMSIG(st));
    pid = fork();
    if (pid == 0) { pause(); _exit(1); }
    kill(pid, SIGTERM); waitpid(pid, &st, 0);
    printf("killed child: by %d\n", WTERMSIG(st));
    pid = vfork();
    if (pid == 0) _exit(5);
    waitpid(pid, &st, 0); printf("vfork child exit %d\n", WEXITSTATUS(st));
    printf("no more children: %d\n", wait(&st) == -1);
    printf("parent of the child is us: ");
    int fds[2]; pipe(fds);
    if (fork() == 0) {
        char b[32]; int n = snprintf(b, sizeof b, "%d", getppid());
        write(fds[1], b, n); _exit(0);
    }
    char b[32] = {0}; read(fds[0], b, sizeof b - 1); wait(0);
    printf("%d\n", atoi(b) == getpid());
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_fork_exec_wait(linkage):
    out = run_c(PROCESSES, linkage=linkage)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "wait4 returns the child: 1",
        "exit status 3",
        "exec'd with argument, pid kept: 1",
        "exec'd child exit 42",
        "crashed child: signaled 1 by 11",
        "killed child: by 15",
        "vfork child exit 5",
        "no more children: 1",
        "parent of the child is us: 1",
    ]


PIPES = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    int fds[2]; pipe(fds);
    if (fork() == 0) {
        close(fds[0]);
        for (int i = 0; i < 1000; i++) dprintf(fds[1], "line %d\n", i);
        _exit(0);
    }
    close(fds[1]);
    char buf[4096]; long total = 0, lines = 0; ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) {
        total += n; for (int i = 0; i < n; i++) lines += buf[i] == '\n';
    }
    wait(0);
    printf("read %ld bytes, %ld lines, then EOF %zd\n", total, lines, n);
    pipe(fds); close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    ssize_t w = write(fds[1], "x", 1);
    printf("write to a closed pipe, SIGPIPE ignored: %zd %s\n", w, strerror(errno));
    signal(SIGPIPE, SIG_DFL);
    fflush(stdout);
    write(fds[1], "x", 1);
    printf("not reached\n");
    return 0;
}
"""


@pytest.mark.parametrize("linkage", LINKAGES)
def test_pipes_eof_and_sigpipe(linkage):
    out = run_c(PIPES, linkage=linkage)
    assert out.stdout.splitlines() == [
        f"read {sum(len(f'line {i}') + 1 for i in range(1000))} bytes, 1000 lines, then EOF 0",
        "write to a closed pipe, SIGPIPE ignored: -1 Broken pipe",
    ]
    assert out.returncode == 128 + signal.SIGPIPE


# ---------------------------------------------------------------------------
# time and identity
# ---------------------------------------------------------------------------

def test_time_identity_and_system_information():
    src = r"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
int main(void) {
    struct timespec a, b, d = {0, 50 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &a); nanosleep(&d, 0); clock_gettime(CLOCK_MONOTONIC, &b);
    long ns = (b.tv_sec - a.tv_sec) * 1000000000L + b.tv_nsec - a.tv_nsec;
    printf("nanosleep slept at least 50 ms: %d\n", ns >= 50 * 1000 * 1000);
    struct timeval tv; gettimeofday(&tv, 0);
    long diff = tv.tv_sec - time(0);
    printf("gettimeofday agrees with time(): %d\n", diff >= -1 && diff <= 1);
    struct utsname u; uname(&u); printf("uname: %s %s\n", u.sysname, u.machine);
    printf("pid %d, gettid is pid %d, ppid %d\n", getpid(), gettid() == getpid(), getppid());
    printf("uid %d gid %d\n", getuid(), getgid());
    struct rlimit r; getrlimit(RLIMIT_STACK, &r);
    printf("stack limit %ld KiB\n", (long)r.rlim_cur / 1024);
    unsigned char k[32] = {0}; printf("getrandom %zd\n", getrandom(k, sizeof k, 0));
    printf("sysconf pagesize %ld\n", sysconf(_SC_PAGESIZE));
    return 0;
}"""
    prog = compile_c(src)
    env = dict(os.environ, PYTHONPATH=str(os.path.dirname(os.path.dirname(__file__))))
    p = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "run", str(prog)],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True)
    out, _ = p.communicate(timeout=120)
    assert out.splitlines() == [
        "nanosleep slept at least 50 ms: 1",
        "gettimeofday agrees with time(): 1",
        "uname: Linux riscv64",
        f"pid {p.pid}, gettid is pid 1, ppid {os.getpid()}",   # the host's own pids
        f"uid {os.getuid()} gid {os.getgid()}",
        "stack limit 8192 KiB",
        "getrandom 32",
        "sysconf pagesize 4096",
    ]


# ---------------------------------------------------------------------------
# what is not implemented says so
# ---------------------------------------------------------------------------

def test_threads_fail_with_enosys_and_one_warning():
    src = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>
static void *run(void *a) { return a; }
int main(void) {
    pthread_t t;
    int e = pthread_create(&t, 0, run, 0);
    printf("pthread_create: %s\n", strerror(e));
    e = pthread_create(&t, 0, run, 0);
    return 0;
}"""
    out = run_c(src)
    assert out.stdout == "pthread_create: Function not implemented\n"
    lines = hvemu_lines(out)
    assert len(lines) == 1 and "threads" in lines[0] and "ENOSYS" in lines[0]


def test_an_unimplemented_system_call_is_enosys_and_strace_names_it():
    src = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r = syscall(SYS_io_setup, 1, 0);
    printf("io_setup: %ld %s\n", r, strerror(errno));
    return 0;
}"""
    out = run_c(src, options=("--strace",))
    assert out.stdout == "io_setup: -1 Function not implemented\n"
    assert any(" io_setup(" in line and "errno=38" in line for line in out.stderr.splitlines())


# ---------------------------------------------------------------------------
# --strace and --stats
# ---------------------------------------------------------------------------

def test_strace_prints_one_line_per_system_call(tmp_path):
    src = r"""
#include <fcntl.h>
#include <unistd.h>
int main(void) { int fd = open("in.txt", O_RDONLY); char b[8]; int n = read(fd, b, sizeof b);
                 write(1, b, n); close(fd); close(fd); return 0; }"""
    (tmp_path / "in.txt").write_text("hello")
    out = run_c(src, options=("--strace",), cwd=tmp_path)
    assert out.stdout == "hello"
    pid = out.stderr.split()[0]
    lines = out.stderr.splitlines()
    for expected in (f'{pid} openat(AT_FDCWD,"in.txt",O_RDONLY,0) = 3',
                     f"{pid} write(1,", f"{pid} close(3) = 0",
                     f"{pid} close(3) = -1 errno=9 (Bad file descriptor)",
                     f"{pid} exit_group(0) = ?"):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert any(line.startswith(f"{pid} read(3,") and line.endswith(" = 5") for line in lines)


def test_strace_shows_signals_as_they_are_delivered():
    src = r"""
#include <signal.h>
static void h(int s) {}
int main(void) { signal(SIGUSR1, h); raise(SIGUSR1); return 0; }"""
    out = run_c(src, options=("--strace",))
    assert any(line.split(" ", 1)[1].startswith("--- SIGUSR1 {si_signo=SIGUSR1") and
               "handler 0x" in line for line in out.stderr.splitlines()), out.stderr
    assert any(" rt_sigreturn() = " in line for line in out.stderr.splitlines())


def test_stats_shows_instructions_mips_and_system_calls_by_name():
    out = run_c("#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }",
                options=("--stats",))
    assert out.stdout == "hi\n"
    for figure in ("instructions", "MIPS", "system calls", "syscall: write",
                   "syscall: exit_group"):
        assert figure in out.stderr, out.stderr


def test_stats_count_the_children_of_a_forking_program():
    src = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) { for (int i = 0; i < 3; i++) if (fork() == 0) { getppid(); _exit(0); }
                 while (wait(0) > 0) {} return 0; }"""
    out = run_c(src, options=("--stats",))
    assert out.returncode == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.stderr.splitlines() if line.count("│") == 3}
    assert rows["processes"] == "4"
    assert rows["syscall: getppid"] == "3"


def test_a_dynamic_program_runs_against_debians_libc6_unpacked_into_a_directory():
    from linuxkit import debian_package
    root = debian_package("libc6")          # trixie's: usr/lib only, no /lib symlink
    assert not (root / "lib").exists()
    prog = compile_c(ARGS_ENV, static=False)
    out = hvemu_run(prog, "x", options=("-L", root))
    assert out.stdout.startswith("argv[1]=x\n"), out.stderr


def test_qemu_ld_prefix_is_the_sysroot_too():
    prog = compile_c(ARGS_ENV, static=False)
    out = hvemu_run(prog, "x", env=dict(os.environ, QEMU_LD_PREFIX=SYSROOT))
    assert out.stdout.startswith("argv[1]=x\n")


def test_stats_json_writes_the_figures(tmp_path):
    import json
    out = run_c("#include <unistd.h>\nint main(void) { getppid(); getppid(); return 0; }",
                options=("--stats-json", tmp_path / "s.json"))
    assert out.returncode == 0 and out.stderr == ""
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["syscalls"]["getppid"] == 2
    assert figures["instructions"] > 0 and figures["processes"] == 1


def test_bench_run_times_a_program_next_to_qemu_riscv64():
    from conftest import require_tool, run_hvemu
    from processkit import QEMU
    require_tool(QEMU, "qemu-user")
    prog = compile_c(r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) { unsigned long s = 0, n = atol(argv[1]);
    for (unsigned long i = 0; i < n; i++) s = s * 6364136223846793005ul + i;
    printf("%lu\n", s); return 0; }""")
    out = run_hvemu("bench", "--repeat", "1", "--run", prog, "2000000", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "hvemu MIPS" in out.stdout and "QEMU MIPS" in out.stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines()
            if line.count("│") == 9]
    row = next(r for r in rows if r[1].replace(",", "").isdigit())     # the figures
    for cell in row[3:]:                       # hvemu s, MIPS, QEMU s, MIPS, hvemu/QEMU
        float(cell.replace(",", ""))           # all measured: numbers, not "-"
