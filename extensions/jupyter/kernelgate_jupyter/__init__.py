"""JupyterLab against kernelgate: the room's files, terminals and kernels, and a rooms panel.

The server extension is active when `GatewayClient.url` is set. While a room is active
(`KERNEL_ROOM` in the Lab server's environment, or the room picked in the panel), Lab's
contents (`contents.RoomContentsManager`) and terminals (`terminals`) are the room's,
served by kernelgate with the GatewayClient's credentials; without one, Lab is stock.
"""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from . import gateway, rooms, terminals
from .contents import RoomContentsManager

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "kernelgate-jupyter"}]


def _jupyter_server_extension_points():
    return [{"module": "kernelgate_jupyter"}]


def _link_jupyter_server_extension(serverapp) -> None:
    """Make RoomContentsManager Lab's contents manager, before the managers are created.

    A contents manager configured by the user becomes its local (no room) manager.
    """
    configured = serverapp.contents_manager_class
    if not issubclass(configured, RoomContentsManager):
        serverapp.config.RoomContentsManager.local_manager_class = configured
        serverapp.contents_manager_class = RoomContentsManager


def _add_handlers_first(web_app, handlers) -> None:
    """Add handlers ahead of every earlier extension's.

    tornado tries host rules in the order they were added, and extensions are loaded
    alphabetically, so jupyter_server_terminals' rules for the same paths came first.
    """
    router = web_app.default_router
    before = list(router.rules)
    web_app.add_handlers(".*$", handlers)
    added = [rule for rule in router.rules if rule not in before]
    router.rules[:] = added + before


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    base_url = web_app.settings["base_url"]
    routes = list(rooms.handlers())
    term_manager = web_app.settings.get("terminal_manager")
    if term_manager is not None:  # jupyter_server_terminals is loaded and terminals are enabled
        name = {"name": "jupyter_server_terminals"}
        routes += [
            (r"/api/terminals", terminals.RoomTerminalRootHandler, name),
            (r"/api/terminals/([\w-]+)", terminals.RoomTerminalHandler, name),
            (r"/terminals/websocket/([\w-]+)", terminals.RoomTermSocket, {**name, "term_manager": term_manager}),
        ]
    _add_handlers_first(web_app, [(url_path_join(base_url, route[0]), *route[1:]) for route in routes])
    if not gateway.gateway_enabled():
        serverapp.log.info("kernelgate_jupyter: no GatewayClient.url, Lab's files and terminals are its own")
    else:
        serverapp.log.info("kernelgate_jupyter: room %s", gateway.active_room() or "(none: Lab's own files and terminals)")
