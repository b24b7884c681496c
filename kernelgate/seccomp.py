"""The seccomp profile of every kernelgate container (kernels and installs).

It keeps the semantics of Docker's default profile as it applies to a container with
every capability dropped (kernelgate's sandboxes): an allow-list, everything else
refused with EPERM; clone without namespace flags; clone3 answered ENOSYS (so libcs
fall back to clone, whose flags can be checked); personality only to its harmless
values. On top of Docker's default it refuses:

- io_uring_setup, io_uring_enter, io_uring_register (ENOSYS, as on a kernel without
  io_uring, so runtimes such as libuv fall back to ordinary system calls): io_uring's
  large in-kernel surface has had many privilege escalations, and Docker 20.10's
  default profile allows it;
- keyctl, add_key, request_key (not in the allow-list): kernel keyrings are not
  namespaced and outlive a container;
- socket(AF_VSOCK), and socketcall (the 32-bit multiplexer whose arguments seccomp
  cannot inspect, which would otherwise reach AF_VSOCK from a 32-bit program).

Origin: the allow-list follows the syscall names of the Moby project's
profiles/seccomp/default.json (github.com/moby/moby, Apache License 2.0), restricted to
the rules that apply without capabilities; the structure and the changes are
kernelgate's. `PROFILE_JSON` is built once at import; `SECURITY_OPT` is the
`security_opt` entry a container is created with. An engine that cannot load the
profile refuses to create the container: kernelgate never falls back to the default.
Under gVisor (runsc) the profile is passed but not applied (Debian 12's runsc applies OCI
profiles only with --oci-seccomp, and then ignores errnoRet); gVisor's own kernel refuses
keyrings and AF_VSOCK there, and its io_uring never reaches the host's (docs/deployment.md).
"""

from __future__ import annotations

import json

#: errno values the profile answers with.
EPERM = 1
ENOSYS = 38

#: Address family number of AF_VSOCK (linux/socket.h).
AF_VSOCK = 40

#: Namespace flags clone() may not use: CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID
#: | NEWNET | NEWCGROUP.
CLONE_NAMESPACES = 0x7E020000

#: personality() values allowed: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, and the query.
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

#: Refused with ENOSYS on top of Docker's default.
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")

#: Allowed unconditionally (Docker's default allow-list, minus io_uring and socketcall).
ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketpair splice stat stat64 statfs statfs64 statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
process_vm_readv process_vm_writev ptrace
""".split()

#: Allowed only on some architectures (Docker's names for them).
BY_ARCH = {
    ("amd64", "x32"): ["arch_prctl"],
    ("amd64", "x32", "x86"): ["modify_ldt"],
    ("arm", "arm64"): ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                       "breakpoint", "cacheflush", "set_tls"],
    ("ppc64le",): ["sync_file_range2", "swapcontext"],
    ("s390", "s390x"): ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
    ("riscv64",): ["riscv_flush_icache"],
}

ARCH_MAP = [
    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
    {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": None},
]


def _allow(names: list[str], **rule) -> dict:
    return {"names": names, "action": "SCMP_ACT_ALLOW", **rule}


def _arg(index: int, value: int, op: str) -> dict:
    return {"index": index, "value": value, "valueTwo": 0, "op": op}


def profile() -> dict:
    """The profile as a Docker seccomp JSON document."""
    rules = [_allow(ALLOWED)]
    rules.append(_allow(["socket"], args=[_arg(0, AF_VSOCK, "SCMP_CMP_NE")]))
    rules += [_allow(["personality"], args=[_arg(0, value, "SCMP_CMP_EQ")]) for value in PERSONALITIES]
    rules += [_allow(names, includes={"arches": list(arches)}) for arches, names in BY_ARCH.items()]
    rules.append(_allow(["clone"], args=[_arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
                        excludes={"arches": ["s390", "s390x"]}))
    # s390 passes clone's flags second
    rules.append(_allow(["clone"], args=[_arg(1, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
                        includes={"arches": ["s390", "s390x"]}))
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    rules.append({"names": list(IO_URING), "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM, "archMap": ARCH_MAP,
            "syscalls": rules}


#: The profile, serialised once.
PROFILE_JSON = json.dumps(profile(), separators=(",", ":"))

#: The docker `security_opt` entry applying it.
SECURITY_OPT = f"seccomp={PROFILE_JSON}"
