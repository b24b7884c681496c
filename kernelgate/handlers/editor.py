"""GET {base_url}editor/...: the built web editor (extensions/editor), served as static files.

Public (the page holds no secret; it reads its token from the URL fragment, which browsers
never send). `/editor` redirects to `/editor/`, which is index.html. No directory listing,
nothing outside the folder (tornado's StaticFileHandler checks every path against its
root), errors as JSON. The folder is the setting `kernelgate_editor_dir`
(`ServeApp.editor_dir`), by default the checkout's `extensions/editor/dist`; until it holds
a build, every path answers 503 saying how to build it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tornado import web

from kernelgate.paths import shipped_folder

#: What the page may load and reach: itself and its own gateway, nothing else. CodeMirror
#: and xterm.js set inline styles; output images are data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

BUILD_HINT = (
    "The web editor is not built: run `cd extensions/editor && npm ci && npm run build` "
    "(scripts/install.sh does it), or point ServeApp.editor_dir at a built copy"
)


def default_editor_dir() -> Path:
    """The checkout's (or installed copy's) extensions/editor/dist."""
    return shipped_folder("extensions") / "editor" / "dist"


class EditorHandler(web.StaticFileHandler):
    """The editor's files; `path` is None for `/editor` (redirected), else `/...`."""

    def initialize(self) -> None:
        folder = self.settings.get("kernelgate_editor_dir") or default_editor_dir()
        super().initialize(path=str(folder), default_filename="index.html")

    def prepare(self) -> None:
        if not os.path.isfile(os.path.join(self.root, "index.html")):
            raise web.HTTPError(503, reason="Editor Not Built")

    async def get(self, path: str | None = None, include_body: bool = True) -> None:
        if path is None:
            self.redirect(self.request.path + "/", permanent=True)
            return
        await super().get(path.lstrip("/"), include_body)

    def set_extra_headers(self, path: str) -> None:
        immutable = path.startswith("assets/")  # Vite names these by their content's hash
        self.set_header("Cache-Control", "public, max-age=31536000, immutable" if immutable else "no-cache")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs) -> None:
        """JSON errors; never the host's paths (tornado's messages name them)."""
        self.clear_header("Cache-Control")
        self.clear_header("Content-Security-Policy")
        if status_code == 503:
            reason, message = "Editor Not Built", BUILD_HINT
        elif status_code == 404:
            reason, message = "Not Found", f"Not found: {self.request.path}"
        else:
            reason = self._reason
            message = f"{reason}: {self.request.path}"
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"reason": reason, "message": message}))
