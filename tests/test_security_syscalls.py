"""System calls a kernel must not make (abuse checklist rows 14 and 18): kernelgate's
seccomp profile (kernelgate/seccomp.py) and the dropped capabilities refuse keyrings,
io_uring, AF_VSOCK sockets, new user namespaces, BPF and mounts."""

from __future__ import annotations

import json

from kernelgate import seccomp
from tests.test_security_gvisor import gateway as gvisor_gateway  # noqa: F401 - a fixture

#: x86-64 system call numbers, arguments that would succeed if allowed, and the refusal.
#: `params` is a zeroed struct io_uring_params (120 bytes).
CALLS = {
    "add_key": (248, 'b"user", b"k", b"v", 1, -3', "Operation not permitted"),
    "keyctl": (250, "0, -3, 0", "Operation not permitted"),  # KEYCTL_GET_KEYRING_ID, session keyring
    "request_key": (249, 'b"user", b"k", None, 0', "Operation not permitted"),
    "io_uring_setup": (425, "4, params", "Function not implemented"),
    "io_uring_enter": (426, "0, 0, 0, 0, None, 0", "Function not implemented"),
    "io_uring_register": (427, "0, 0, None, 0", "Function not implemented"),
    "socket(AF_VSOCK)": (41, "40, 1, 0", "Operation not permitted"),
    "unshare(CLONE_NEWUSER)": (272, "0x10000000", "Operation not permitted"),
    "bpf": (321, "0, 0, 0", "Operation not permitted"),
    "mount": (165, 'b"none", b"/tmp", b"tmpfs", 0, 0', "Operation not permitted"),
}


def probe(calls) -> str:
    """Python code printing `name result strerror` (or `allowed`) for each call."""
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "params = ctypes.create_string_buffer(120)\n")
    for name, (number, args, _) in calls.items():
        code += (f"result = libc.syscall({number}, {args})\n"
                 f"print({name!r}, result, os.strerror(ctypes.get_errno()) if result < 0 else 'allowed')\n")
    return code


async def test_a_kernel_is_refused_dangerous_system_calls(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    code = probe(CALLS)
    # what a program does with them still works: Python's own AF_VSOCK socket is refused,
    # ordinary sockets, threads and processes are not
    code += ("import socket, subprocess, threading\n"
             "try:\n    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n"
             "except OSError as e:\n    print('AF_VSOCK', e.strerror)\n"
             "socket.socket(socket.AF_UNIX).close(); socket.socket(socket.AF_INET).close()\n"
             "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
             "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n")
    run = await ws.execute(code)
    ws.close()
    assert run.stdout.splitlines() == [f"{name} -1 {refusal}" for name, (_, _, refusal) in CALLS.items()] + [
        "AF_VSOCK Operation not permitted", "thread", "child"], run.stdout
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


#: What gVisor's own kernel answers (runsc of Debian 12 applies no OCI seccomp profile
#: without --oci-seccomp, and with it ignores errnoRet, so glibc's clone3 probe gets EPERM
#: and no thread starts). io_uring is gVisor's own implementation there, never the host's.
GVISOR_REFUSES = {
    "add_key": "Permission denied", "keyctl": "Permission denied", "request_key": "Permission denied",
    "socket(AF_VSOCK)": "Address family not supported by protocol",
    "mount": "Operation not permitted",
}


async def test_an_untrusted_kernel_is_refused_keyrings_and_vsock_by_gvisor(gvisor_gateway):  # noqa: F811
    client = gvisor_gateway.client()
    kernel = await client.start_kernel("python-untrusted")
    ws = await client.connect(kernel["id"])
    run = await ws.execute(probe({name: CALLS[name] for name in GVISOR_REFUSES}), timeout=120)
    ws.close()
    assert run.stdout.splitlines() == [f"{name} -1 {refusal}" for name, refusal in GVISOR_REFUSES.items()], run.stdout
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")


def test_the_profile_is_docker_default_minus_the_dangerous_calls():
    """The profile refuses by default and allows none of the calls above unconditionally."""
    profile = json.loads(seccomp.PROFILE_JSON)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == seccomp.EPERM
    plain = {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
             and not r.get("includes") for n in r["names"]}
    assert len(plain) > 300 and {"read", "execve", "futex"} <= plain
    refused = {*seccomp.IO_URING, "keyctl", "add_key", "request_key", "socket", "socketcall", "clone",
               "clone3", "unshare", "setns", "mount", "bpf", "perf_event_open", "open_by_handle_at"}
    assert not plain & refused
    socket_rules = [r for r in profile["syscalls"] if "socket" in r["names"]]
    assert socket_rules == [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]}]
    assert seccomp.SECURITY_OPT == f"seccomp={seccomp.PROFILE_JSON}"
