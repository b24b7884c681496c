"""ILua, started so that it handles no request before its Lua interpreter is connected.

Usage: python /opt/kernelgate/ilua/kernelgate_ilua.py [ILua's options] -c CONNECTION_FILE

ILua 0.2.1 opens its ZeroMQ sockets, answers kernel_info at once, and only then connects
to the Lua child process it started.  A request arriving in between (in practice the first
execute_request, sent as soon as the kernel answers kernel_info, on a slow tier) fails with
an AttributeError, gets no reply, and makes ILua stop.  Here every request waits until
ILua's startup has finished; everything else is ILua's own behaviour.
"""

from __future__ import annotations

from twisted.internet import defer

from ilua.app import ILuaApp
from ilua.kernel import ILuaKernel


class StartedILuaKernel(ILuaKernel):
    """ILuaKernel whose requests are handled only after ``do_startup`` has completed
    (successfully or not)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._startup = defer.DeferredLock()
        self._startup.acquire()  # released when do_startup is done

    @defer.inlineCallbacks
    def do_startup(self):
        try:
            yield super().do_startup()
        finally:
            self._startup.release()

    @defer.inlineCallbacks
    def handle_message(self, *args, **kwargs):
        yield self._startup.run(lambda: None)
        result = yield super().handle_message(*args, **kwargs)
        return result


def main() -> None:
    """ILua's command line, running StartedILuaKernel."""
    app = ILuaApp()
    app.kernel_cls = StartedILuaKernel
    app.run()


if __name__ == "__main__":
    main()
