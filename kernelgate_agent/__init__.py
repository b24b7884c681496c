"""kernelgate's in-sandbox agent: starts the kernel, serves terminals, files and kernel
control to the gateway. Depends only on pyzmq and the standard library, so that it
installs into every kernel image unchanged."""
