"""bash_kernel without pexpect's 50 ms pause before every line it sends.

bash_kernel drives bash through pexpect and sends everything line by line: its own setup
at start (about 40 lines) and every cell. pexpect sleeps `delaybeforesend` (50 ms) before
each send, for programs that drop input typed too early (password prompts); bash does
not, and bash_kernel waits for bash's prompt after each line anyway. With the pause a
kernel took 2.8 s to start and every cell line cost 50 ms. pexpect documents the
attribute and None as "no pause"; bash_kernel creates its spawn itself, so this launcher
gives it a spawn class whose pause is off, then runs the kernel as `python -m
bash_kernel` would.
"""

import pexpect
from bash_kernel.kernel import BashKernel
from ipykernel.kernelapp import IPKernelApp


class _Spawn(pexpect.spawn):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.delaybeforesend = None


pexpect.spawn = _Spawn  # bash_kernel.kernel calls pexpect.spawn(...) when a kernel starts

if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
