"""`python -m kernelgate_agent --connection-file F --workspace W [--max-file-size N]
[--shell S] -- KERNEL ARGV...`

The kernel is started first, before the agent's own imports (asyncio, zmq), which then
load beside the kernel's: a user waits for the kernel, not for the agent.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from kernelgate_agent.process import signal_group, start_kernel


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        raise SystemExit("usage: kernelgate_agent [options] -- kernel argv...")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="kernelgate_agent")
    parser.add_argument("--connection-file", required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--max-file-size", type=int, default=0)
    parser.add_argument("--shell", default="/bin/bash")
    options = parser.parse_args(args[:split])
    kernel_argv = args[split + 1:]
    os.makedirs(options.workspace, exist_ok=True)
    try:
        kernel = start_kernel(kernel_argv, options.workspace)
    except (OSError, IndexError) as e:
        raise SystemExit(f"[agent] cannot start the kernel {kernel_argv!r}: {e}") from None
    # an interrupt that comes while the agent loads is the kernel's, as it is afterwards
    signal.signal(signal.SIGINT, lambda *_: signal_group(kernel, signal.SIGINT))

    import asyncio
    import logging

    from kernelgate_agent.agent import Agent

    logging.basicConfig(level=logging.INFO, format="[agent] %(levelname)s %(message)s")
    agent = Agent(options.connection_file, options.workspace, kernel_argv, kernel,
                  options.shell, options.max_file_size)
    sys.exit(asyncio.run(agent.run()))
