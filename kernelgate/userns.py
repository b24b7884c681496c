"""Host uids of sandboxes: the owner, on the host, of what the gateway gives a sandbox.

A sandbox runs as a container uid (`DockerProvisioner.uid`, `EnvironmentService.uid`,
`RoomStorage.workspace_uid`, 1000 by default). Without user namespaces that is also its
uid on the host. With Docker's `userns-remap`, the engine maps container ids to a
subordinate range of the host: the gateway must then give the socket folder, an
install's staging area and a room's workspace to the mapped host uid and gid, else the
sandbox cannot write them.

The mapping is derived from the engine that runs the sandboxes: `docker info` names
`name=userns` in its security options and its root folder ends in `<uid>.<gid>`, the
host ids of container root (moby's layout). The ranges of the remap user are the ones of
/etc/subuid and /etc/subgid whose lowest start is that root (moby maps them in ascending
order of start); without a readable matching entry the map is one range from root
(container id n = root + n). `UserNamespace.host_uid` and `host_gid` override the
derivation.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass

from traitlets import Int
from traitlets.config import LoggingConfigurable

from kernelgate.errors import Unavailable

#: Container ids a remapped engine maps when the subordinate ranges cannot be read.
_DEFAULT_LENGTH = 65536


@dataclass(frozen=True)
class IdMap:
    """Container id -> host id, as ranges (container start, host start, length). No
    ranges: the identity (the engine does not remap)."""

    uids: tuple[tuple[int, int, int], ...] = ()
    gids: tuple[tuple[int, int, int], ...] = ()

    def host(self, container_id: int, gid: bool = False) -> int:
        """The host id of `container_id`; ValueError if the engine leaves it unmapped."""
        ranges = self.gids if gid else self.uids
        if not ranges:
            return container_id
        for start, host, length in ranges:
            if start <= container_id < start + length:
                return host + container_id - start
        raise ValueError(f"container id {container_id} is outside the engine's user namespace")


def _ranges(path: str, root: int) -> tuple[tuple[int, int, int], ...]:
    """The ranges of the user of `path` (/etc/subuid syntax) whose lowest start is
    `root`, laid end to end from container id 0; one default range if none is found."""
    users: dict[str, list[tuple[int, int]]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f.read(1 << 20).splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    users.setdefault(parts[0], []).append((int(parts[1]), int(parts[2])))
    except OSError:
        pass
    for spans in users.values():
        spans.sort()
        if spans[0][0] == root:
            ranges, start = [], 0
            for host, length in spans:
                ranges.append((start, host, length))
                start += length
            return tuple(ranges)
    return ((0, root, _DEFAULT_LENGTH),)


def engine_map(info: dict, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMap:
    """The id map of the engine whose `docker info` is `info` (identity when it does not
    remap). ValueError if it remaps but its root folder does not name container root's
    host ids."""
    options = info.get("SecurityOptions") or []
    if not any("name=userns" in option.split(",") for option in options):
        return IdMap()
    found = re.search(r"/(\d+)\.(\d+)/?$", info.get("DockerRootDir") or "")
    if not found:
        raise ValueError(f"the engine remaps users but its root folder {info.get('DockerRootDir')!r}"
                         " does not name them: set UserNamespace.host_uid and host_gid")
    uid, gid = int(found.group(1)), int(found.group(2))
    return IdMap(_ranges(subuid, uid), _ranges(subgid, gid))


_maps: dict[str, IdMap] = {}  # docker_url -> the engine's map, once it answered
_lock = threading.Lock()


class UserNamespace(LoggingConfigurable):
    """Resolves a sandbox's container uid to its host uid and gid (module doc)."""

    host_uid = Int(
        -1, config=True,
        help="Host uid owning sandboxes' files (socket folders, install staging areas, room "
        "workspaces). -1: derived from the engine (the container uid when it does not remap "
        "users; the uid it maps the container uid to under userns-remap).",
    )
    host_gid = Int(-1, config=True, help="Host gid of sandboxes' files; -1: derived as host_uid.")

    def ids(self, engine, uid: int) -> tuple[int, int]:
        """Blocking: the host (uid, gid) of container uid (and gid) `uid` under `engine`
        (a DockerEngine; None: no engine, the identity). Asks the engine once; if it does
        not answer, the identity, not remembered (a warning). Unavailable (a JSON 503) if
        the engine remaps users and `uid` has no host uid, or the mapping is unknown."""
        if self.host_uid >= 0:
            return self.host_uid, self.host_gid if self.host_gid >= 0 else self.host_uid
        try:
            mapping = IdMap() if engine is None else self._map(engine)
            host_uid, host_gid = mapping.host(uid), mapping.host(uid, gid=True)
        except ValueError as e:
            raise Unavailable(f"Sandbox files have no host owner: {e}") from None
        return host_uid, self.host_gid if self.host_gid >= 0 else host_gid

    async def ids_async(self, engine, uid: int) -> tuple[int, int]:
        """`ids` off the event loop."""
        return await asyncio.to_thread(self.ids, engine, uid)

    def _map(self, engine) -> IdMap:
        with _lock:
            known = _maps.get(engine.docker_url)
        if known is not None:
            return known
        try:
            client = engine.new_client()
            try:
                info = client.info()
            finally:
                client.close()
        except Exception as e:  # noqa: BLE001 - any failure to reach the engine
            self.log.warning("Docker engine did not say whether it remaps users (%s): sandbox "
                             "files go to their container uid", e)
            return IdMap()
        mapping = engine_map(info)
        if mapping.uids:
            self.log.info("Docker engine remaps users: container root is host uid %s, gid %s",
                          mapping.host(0), mapping.host(0, gid=True))
        with _lock:
            _maps[engine.docker_url] = mapping
        return mapping
