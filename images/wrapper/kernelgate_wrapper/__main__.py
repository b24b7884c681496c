"""``python -m kernelgate_wrapper --WrapperKernel.language=NAME -f CONNECTION_FILE``"""

from ipykernel.kernelapp import IPKernelApp
from traitlets import Bool

from kernelgate_wrapper.kernel import WrapperKernel


class WrapperKernelApp(IPKernelApp):
    """IPKernelApp serving WrapperKernel.  User programs write to pipes of their own, never to
    the kernel's fds 1 and 2, so those are not captured: what lands there is the kernel's log."""

    capture_fd_output = Bool(False).tag(config=True)


if __name__ == "__main__":
    WrapperKernelApp.launch_instance(kernel_class=WrapperKernel)
