"""Users as the gateway has seen them, recorded in the store (at most once per
`interval` seconds per user, so that requests do not each write to the database)."""

from __future__ import annotations

import time

from kernelgate.identity import Identity
from kernelgate.store import Store


class SeenUsers:
    def __init__(self, store: Store, interval: float = 300.0) -> None:
        self.store = store
        self.interval = interval
        self._last: dict[str, tuple[float, str]] = {}

    async def seen(self, identity: Identity) -> None:
        now = time.monotonic()
        last = self._last.get(identity.user)
        if last and now - last[0] < self.interval and last[1] == identity.tier:
            return
        self._last[identity.user] = (now, identity.tier)
        await self.store.touch_user(identity.user, identity.name, identity.tier)
