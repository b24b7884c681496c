"""kernelgate: a Jupyter kernel gateway that runs every kernel in a sandboxed container."""

__version__ = "0.1.0"
