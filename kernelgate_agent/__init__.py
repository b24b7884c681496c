"""kernelgate's in-sandbox agent: starts the kernel, serves terminals, files and kernel
control to the gateway. Depends only on pyzmq and jupyter_client, so that it installs
into every kernel image unchanged."""
