"""Abuse checklist rows 1, 2 and 8 per language, against real kernels in their own images.

- Fork bombs (row 1) in bash, C and Go meet the tier's pids limit: forks fail with
  EAGAIN below the limit, the tier's exec_timeout stops the cell, and the kernel answers
  again (or comes back restarted); the gateway stays fine.
- Memory bombs (row 2) in Python, the JVM and Rust stay within the tier's memory: the
  JVM refuses with OutOfMemoryError (its heap is a share of the container's memory), a
  Rust program is killed by the container's OOM killer and the cell says so, Python's
  kernel is OOM-killed, reported, and revived.
- Compile bombs (row 8) in C end within the tier's limits with an error message.
"""

from __future__ import annotations

import asyncio

import pytest

from kernelgate.tiers import DEFAULT_TIERS
from tests.harness import GatewayProcess

#: Every tier as shipped, with a short exec_timeout so a bomb's cell is stopped soon.
CONFIG = f"""
c.Tiers.tiers = {{name: {{**spec, "exec_timeout": 20}} for name, spec in {DEFAULT_TIERS!r}.items()}}
c.KernelRegistry.timeout_grace = 5
"""


@pytest.fixture(scope="module")
def gateway(docker_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    (folder / "config.py").write_text(CONFIG)
    # the team plan may use the high tier (Java, Rust)
    gateway = GatewayProcess(folder, "--kernels=docker", "--DevIdentityProvider.tier=team",
                             f"--config={folder / 'config.py'}").start()
    yield gateway
    gateway.stop()
    gateway.cleanup()
    assert "Traceback" not in gateway.log(), gateway.log()


async def follow(ws, msg_id: str, timeout: float = 180) -> tuple[str, dict | None]:
    """The text a cell printed (streams and error tracebacks) and its execute_reply
    content, or None if the kernel died (restarting / dead) before replying."""
    text = ""
    while True:
        msg = await ws.recv(timeout=timeout)
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            text += content["text"]
        elif kind == "error":
            text += "\n".join(content.get("traceback", [])) + f"\n{content['ename']}: {content['evalue']}\n"
        elif kind == "status" and content["execution_state"] in ("restarting", "dead"):
            return text, None
        elif kind == "execute_reply" and msg["parent_header"].get("msg_id") == msg_id:
            return text, content


async def answers_again(client, ws, kernel_id: str, hello: str) -> str:
    """What `hello` prints once the kernel is idle again (after a restart, too)."""
    for _ in range(600):
        model = (await client.request("GET", f"/api/kernels/{kernel_id}")).body
        if model.get("execution_state") == "idle":
            break
        await asyncio.sleep(0.2)
    assert model.get("execution_state") == "idle", model
    run = await ws.execute(hello, timeout=120)
    assert run.status == "ok", run.reply
    return run.stdout


async def bomb(gateway, kernel: str, code: str, hello: str) -> tuple[str, dict | None, str]:
    """Run `code` in a new `kernel`: its text and reply, and what `hello` printed once the
    kernel answered again (it must print "hello"); the gateway still serves."""
    client = gateway.client()
    started = await client.start_kernel(kernel)
    ws = await client.connect(started["id"])
    try:
        msg_id = await ws.send("shell", "execute_request", {"code": code, "silent": False})
        text, reply = await follow(ws, msg_id)
        said = await answers_again(client, ws, started["id"], hello)
        assert "hello" in said, said
    finally:
        ws.close()
        await client.request("DELETE", f"/api/kernels/{started['id']}")
    assert (await client.request("GET", "/api")).status == 200
    return text, reply, said


# -- row 1: fork bombs ------------------------------------------------------------------

C_FORKS = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int forks = 0;
for (;;) {
    pid_t child = fork();
    if (child == 0) { for (;;) pause(); }
    if (child < 0) {
        printf("fork refused after %d: %s\n", forks, strerror(errno));
        fflush(stdout);
        for (;;) pause();
    }
    forks++;
}
"""

GO_FORKS = r"""
import (
	"fmt"
	"os/exec"
	"time"
)
forks := 0
for {
	if err := exec.Command("sleep", "600").Start(); err != nil {
		fmt.Printf("fork refused after %d: %v\n", forks, err)
		break
	}
	forks++
}
time.Sleep(time.Hour)
"""

#: kernel, its tier's pids limit, the bomb, a hello cell.
FORK_BOMBS = {
    "bash": (128, ":(){ :|:& };:; sleep 5", "read -r most < /sys/fs/cgroup/pids/pids.max; echo hello $most"),
    "c": (256, C_FORKS, '#include <stdio.h>\nprintf("hello\\n");'),
    "go": (256, GO_FORKS, 'import "fmt"\nfmt.Println("hello")'),
}


@pytest.mark.parametrize("kernel", FORK_BOMBS)
async def test_a_fork_bomb_meets_the_pids_limit(gateway, kernel):
    """C and Go count their forks until refused, then wait for the timeout (which stops
    the program's whole process group); bash's classic bomb dies down by itself once its
    forks keep failing."""
    pids, code, hello = FORK_BOMBS[kernel]
    text, reply, said = await bomb(gateway, kernel, code, hello)
    assert "resource temporarily unavailable" in text.lower(), text[-2000:]  # EAGAIN: the pids limit
    if kernel == "bash":
        # the hello cell's own output comes last (the bomb's last dying forks may still
        # write their complaints into it first)
        assert "fork: retry" in text and said.split()[-2:] == ["hello", str(pids)], (said, text[-2000:])
    else:
        assert int(text.split("fork refused after ")[1].split(":")[0]) < pids
        assert "ran longer than 20 s" in text, text[-2000:]  # the tier's exec_timeout stopped it
        assert reply is None or reply["ename"] == "KeyboardInterrupt", reply


# -- row 2: memory bombs ----------------------------------------------------------------

JAVA_MEMORY = """
java.util.List<byte[]> kept = new java.util.ArrayList<>();
while (true) kept.add(new byte[10_000_000]);
"""

RUST_MEMORY = """
let mut kept: Vec<Vec<u8>> = Vec::new();
loop { kept.push(vec![1u8; 10_000_000]); }
"""


async def test_a_python_memory_bomb_is_oom_killed_and_reported(gateway):
    text, reply, said = await bomb(gateway, "python3", "x = []\nwhile True: x.append(' ' * 10**7)",
                                    "print('hello')")
    assert reply is None and "ran out of memory (the 256 MiB limit of its tier)" in text, text


async def test_a_jvm_memory_bomb_is_refused_within_the_tier(gateway):
    """The JVM's heap is half the container's memory (-XX:MaxRAMPercentage=50): the bomb
    meets the heap's end, not the container's, and the kernel keeps its state."""
    text, reply, said = await bomb(gateway, "java", JAVA_MEMORY, 'System.out.println("hello");')
    assert reply is not None and reply["status"] == "error", text
    assert "java.lang.OutOfMemoryError: Java heap space" in text, text


#: Prints the container's memory limit and how often its OOM killer ran (cgroup v1).
RUST_OOM_COUNT = """
let control = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.oom_control").unwrap();
let limit = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").unwrap();
println!("hello {} {}", limit.trim(), control.lines().find(|l| l.starts_with("oom_kill ")).unwrap());
"""


async def test_a_rust_memory_bomb_is_oom_killed_and_reported(gateway):
    """The OOM killer of the container's cgroup (the high tier's 1 GiB) ends the program,
    the largest process; the cell says so, and the kernel stays."""
    text, reply, said = await bomb(gateway, "rust", RUST_MEMORY, RUST_OOM_COUNT)
    assert reply is not None and reply["status"] == "error", text
    assert "killed by SIGKILL" in reply["evalue"] and "memory limit" in reply["evalue"], reply
    assert said.split() == ["hello", str(1024 << 20), "oom_kill", "1"], said


# -- row 8: compile bombs ---------------------------------------------------------------

#: A macro doubling 40 times: an expression of 2**40 terms.
MACRO_BOMB = "#define X0 1 +\n" + "".join(f"#define X{i} X{i - 1} X{i - 1}\n" for i in range(1, 41)) + "int v = X40 1;\n"

#: payload -> what the compiler's error says: cc1 OOM-killed within the tier's memory,
#: or the assembler's object file meeting the size of /tmp (256 MiB in the medium tier).
COMPILE_BOMBS = {
    "include /dev/zero": ('#include "/dev/zero"\n', "Killed signal terminated program cc1"),
    "macro explosion": (MACRO_BOMB, "Killed signal terminated program cc1"),
    "1 GiB initialised array": ("int bomb[0x10000000] = {1};\n", "No space left on device"),
}


@pytest.mark.parametrize("payload", COMPILE_BOMBS, ids=COMPILE_BOMBS.keys())
async def test_a_c_compile_bomb_ends_with_an_error(gateway, payload):
    """The compiler runs inside the sandbox under the tier's limits: the bomb ends by
    itself (no timeout needed) with a compile error that says why."""
    code, says = COMPILE_BOMBS[payload]
    text, reply, said = await bomb(gateway, "c", code, '#include <stdio.h>\nprintf("hello\\n");')
    assert reply is not None and reply["status"] == "error", text[-2000:]
    assert reply["ename"] == "CompileError" and says in text, (reply, text[-2000:])
    assert "ran longer than" not in text
