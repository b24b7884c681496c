# IPython kernel configuration of the python image (/opt/kernelgate/venv/etc/ipython).
# ipykernel imports debugpy (about 140 modules, 7.5 MB of private memory per kernel) to
# offer the debugger, which kernelgate's kernelspecs do not (metadata "debugger": false).
# Importing ipykernel.debugger while debugpy is hidden leaves the kernel without the
# debugger ("debugger" is not among kernel_info's supported_features); debugpy stays
# importable for the kernel's user.
import sys

if "ipykernel.debugger" not in sys.modules:
    sys.modules["debugpy"] = None  # an import of debugpy raises ImportError meanwhile
    try:
        import ipykernel.debugger  # noqa: F401
    finally:
        del sys.modules["debugpy"]
