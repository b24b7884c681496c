"""jupyter_server's sessions API: /api/sessions, /api/sessions/{id}."""

from kernelgate.handlers.base import APIHandler
from kernelgate.handlers.kernels import start_solo_kernel


class SessionsHandler(APIHandler):
    async def get(self):
        self.write_json(self.services.sessions.list(self.identity.user))

    async def post(self):
        sessions = self.services.sessions
        session = await sessions.create(
            self.identity.user, self.json_body(), lambda name: start_solo_kernel(self, name, {})
        )
        self.set_header("Location", f"{self.settings['base_url']}api/sessions/{session.id}")
        self.write_json(sessions.model(session), status=201)


class SessionHandler(APIHandler):
    async def get(self, session_id: str):
        sessions = self.services.sessions
        self.write_json(sessions.model(sessions.get(self.identity.user, session_id)))

    async def patch(self, session_id: str):
        sessions = self.services.sessions
        session = await sessions.update(
            self.identity.user, session_id, self.json_body(), lambda name: start_solo_kernel(self, name, {})
        )
        self.write_json(sessions.model(session))

    async def delete(self, session_id: str):
        await self.services.sessions.delete(self.identity.user, session_id)
        self.set_status(204)
        self.finish()
