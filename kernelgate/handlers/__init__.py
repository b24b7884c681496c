"""The URL table: every route kernelgate serves, below the base URL."""

from kernelgate.handlers.admin import (
    AdminAuditHandler,
    AdminKernelHandler,
    AdminKernelsHandler,
    AdminRoomHandler,
    AdminRoomsHandler,
    AdminSnapshotsHandler,
)
from kernelgate.handlers.api import APIStatusHandler, APIVersionHandler
from kernelgate.handlers.base import NotFoundHandler
from kernelgate.handlers.channels import ChannelsHandler
from kernelgate.handlers.contents import KernelContentsHandler
from kernelgate.handlers.editor import EditorHandler
from kernelgate.handlers.environment import (
    KernelEnvironmentHandler,
    KernelEnvironmentInstallHandler,
    RoomEnvironmentHandler,
    RoomEnvironmentInstallHandler,
)
from kernelgate.handlers.kernels import KernelActionHandler, KernelHandler, KernelsHandler
from kernelgate.handlers.health import HealthHandler, ReadyHandler
from kernelgate.handlers.metrics import MetricsHandler
from kernelgate.handlers.languages import LanguagesHandler
from kernelgate.handlers.kernelspecs import (
    KernelSpecHandler,
    KernelSpecResourceHandler,
    KernelSpecsHandler,
)
from kernelgate.handlers.rooms import (
    RoomContentsHandler,
    RoomHandler,
    RoomKernelsHandler,
    RoomLanguagesHandler,
    RoomMemberHandler,
    RoomMembersHandler,
    RoomsHandler,
)
from kernelgate.handlers.sessions import SessionHandler, SessionsHandler
from kernelgate.handlers.snapshots import RoomSnapshotRestoreHandler, RoomSnapshotsHandler
from kernelgate.handlers.terminals import TerminalHandler, TerminalSocketHandler, TerminalsHandler

_ID = r"(?P<{}>[\w-]+)"
_KERNEL = _ID.format("kernel_id")
_ROOM = _ID.format("room_id")
_WORKSPACE = _ID.format("workspace_id")  # a kernel's or a room's


def routes(base_url: str) -> list[tuple]:
    """(pattern, handler) pairs for tornado, prefixed with base_url ('/' or '/x/')."""
    table = [
        (r"api/?", APIVersionHandler),
        (r"api/health/?", HealthHandler),
        (r"api/ready/?", ReadyHandler),
        (r"metrics/?", MetricsHandler),
        (r"api/status/?", APIStatusHandler),
        (r"api/kernelspecs/?", KernelSpecsHandler),
        (r"api/kernelspecs/(?P<name>[^/]+)/?", KernelSpecHandler),
        (r"kernelspecs/(?P<name>[^/]+)/(?P<file>[^/]+)", KernelSpecResourceHandler),
        (r"api/languages/?", LanguagesHandler),
        (r"api/kernels/?", KernelsHandler),
        (rf"api/kernels/{_KERNEL}/?", KernelHandler),
        (rf"api/kernels/{_KERNEL}/(?P<action>interrupt|restart)/?", KernelActionHandler),
        (rf"api/kernels/{_KERNEL}/channels", ChannelsHandler),
        (rf"api/kernels/{_WORKSPACE}/contents(?P<path>/.*)?", KernelContentsHandler),
        (rf"api/kernels/{_KERNEL}/environment/?", KernelEnvironmentHandler),
        (rf"api/kernels/{_KERNEL}/environment/install/?", KernelEnvironmentInstallHandler),
        (r"api/terminals/?", TerminalsHandler),
        (r"api/terminals/(?P<name>[^/]+)/?", TerminalHandler),
        (r"terminals/websocket/(?P<name>[^/]+)", TerminalSocketHandler),
        (r"api/rooms/?", RoomsHandler),
        (rf"api/rooms/{_ROOM}/?", RoomHandler),
        (rf"api/rooms/{_ROOM}/languages/?", RoomLanguagesHandler),
        (rf"api/rooms/{_ROOM}/members/?", RoomMembersHandler),
        (rf"api/rooms/{_ROOM}/members/(?P<user>[^/]+)/?", RoomMemberHandler),
        (rf"api/rooms/{_ROOM}/kernels/?", RoomKernelsHandler),
        (rf"api/rooms/{_ROOM}/snapshots/?", RoomSnapshotsHandler),
        (rf"api/rooms/{_ROOM}/snapshots/{_ID.format('snapshot_id')}/restore/?", RoomSnapshotRestoreHandler),
        (rf"api/rooms/{_WORKSPACE}/contents(?P<path>/.*)?", RoomContentsHandler),
        (rf"api/rooms/{_ROOM}/environment/?", RoomEnvironmentHandler),
        (rf"api/rooms/{_ROOM}/environment/install/?", RoomEnvironmentInstallHandler),
        (r"api/admin/kernels/?", AdminKernelsHandler),
        (rf"api/admin/kernels/{_KERNEL}/?", AdminKernelHandler),
        (r"api/admin/rooms/?", AdminRoomsHandler),
        (rf"api/admin/rooms/{_ROOM}/?", AdminRoomHandler),
        (r"api/admin/snapshots/?", AdminSnapshotsHandler),
        (r"api/admin/audit/?", AdminAuditHandler),
        (r"api/sessions/?", SessionsHandler),
        (rf"api/sessions/{_ID.format('session_id')}/?", SessionHandler),
        (r"editor(?P<path>/.*)?", EditorHandler),
        (r".*", NotFoundHandler),
    ]
    return [(base_url + pattern, handler) for pattern, handler in table]
