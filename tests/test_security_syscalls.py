"""System calls a kernel must not make (abuse checklist rows 14 and 18): Docker's default
seccomp profile and the dropped capabilities refuse keyrings, new user namespaces, BPF
and mounts. io_uring is not refused yet (docs/security.md, row 14)."""

from __future__ import annotations

#: x86-64 system call numbers, and arguments that would succeed if allowed.
CALLS = {
    "add_key": (248, 'b"user", b"k", b"v", 1, -3'),
    "keyctl": (250, "0, -3, 0"),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "unshare(CLONE_NEWUSER)": (272, "0x10000000"),
    "bpf": (321, "0, 0, 0"),
    "mount": (165, 'b"none", b"/tmp", b"tmpfs", 0, 0'),
}


async def test_a_kernel_is_refused_dangerous_system_calls(docker_gateway):
    client = docker_gateway.client()
    kernel = await client.start_kernel()
    ws = await client.connect(kernel["id"])
    code = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    for name, (number, args) in CALLS.items():
        code += (f"result = libc.syscall({number}, {args})\n"
                 f"print({name!r}, result, os.strerror(ctypes.get_errno()) if result < 0 else 'allowed')\n")
    run = await ws.execute(code)
    ws.close()
    assert run.stdout.splitlines() == [f"{name} -1 Operation not permitted" for name in CALLS], run.stdout
    await client.request("DELETE", f"/api/kernels/{kernel['id']}")
