"""Rooms REST API: /api/rooms..., members, languages, kernels and the room's files."""

from __future__ import annotations

from kernelgate.contents import Contents
from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.contents import ContentsMixin


class RoomsHandler(APIHandler):
    async def get(self):
        rooms = self.services.rooms
        self.write_json([rooms.model(r) for r in rooms.rooms_of(self.identity)])

    async def post(self):
        rooms = self.services.rooms
        room = await rooms.create(self.identity, self.json_body())
        self.set_header("Location", f"{self.settings['base_url']}api/rooms/{room.id}")
        self.write_json(rooms.model(rooms.get(self.identity, room.id)), status=201)


class RoomHandler(APIHandler):
    async def get(self, room_id: str):
        rooms = self.services.rooms
        self.write_json(rooms.model(rooms.get(self.identity, room_id)))

    async def patch(self, room_id: str):
        rooms = self.services.rooms
        self.write_json(rooms.model(await rooms.update(self.identity, room_id, self.json_body())))

    async def delete(self, room_id: str):
        await self.services.rooms.delete(self.identity, room_id)
        self.set_status(204)
        self.finish()


class RoomLanguagesHandler(APIHandler):
    async def put(self, room_id: str):
        rooms = self.services.rooms
        room = await rooms.set_languages(self.identity, room_id, self.json_body())
        self.write_json(rooms.model(room))


class RoomMembersHandler(APIHandler):
    async def get(self, room_id: str):
        room = self.services.rooms.get(self.identity, room_id)
        self.write_json([{"user": m.user, "role": m.role} for m in room.members])


class RoomMemberHandler(APIHandler):
    async def put(self, room_id: str, user: str):
        rooms = self.services.rooms
        room = await rooms.set_member(self.identity, room_id, user, self.json_body())
        self.write_json([{"user": m.user, "role": m.role} for m in room.members])

    async def delete(self, room_id: str, user: str):
        await self.services.rooms.remove_member(self.identity, room_id, user)
        self.set_status(204)
        self.finish()


class RoomKernelsHandler(APIHandler):
    async def get(self, room_id: str):
        kernels = await self.services.rooms.kernels(self.identity, room_id)
        self.write_json([k.model() for k in kernels])


class RoomContentsHandler(ContentsMixin, APIHandler):
    """The room's workspace: viewers read, participants write, admins delete."""

    async def contents(self, workspace_id: str, needed: str) -> Contents:
        return Contents(await self.services.rooms.kernel_for(self.identity, workspace_id, None, needed))
