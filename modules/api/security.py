"""Who may call the API and how much they may send: HTTP basic auth (the webui's --api-auth) and a body size limit.

Both are plain ASGI middleware, so they answer before any endpoint (or the docs) runs.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


def parse_api_auth(text: str) -> dict[str, str]:
    """The webui's --api-auth value, "user:password[,user2:password2]", as {user: password}."""
    credentials = {}
    for pair in text.split(","):
        user, separator, password = pair.strip().partition(":")
        if not user or not separator or not password:
            raise ValueError(f"--api-auth: expected user:password[,user:password], got {pair.strip()!r}")
        credentials[user] = password
    return credentials


class BasicAuth:
    """HTTP basic auth on every path, the docs included; 401 with WWW-Authenticate otherwise."""

    def __init__(self, app, credentials: dict[str, str]):
        self.app, self.credentials = app, credentials

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not self.authorized(dict(scope["headers"]).get(b"authorization", b"")):
            response = JSONResponse(
                {"error": "unauthorized", "field": None, "detail": "Incorrect username or password"},
                401,
                headers={"WWW-Authenticate": 'Basic realm="Serena"'},
            )
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    def authorized(self, header: bytes) -> bool:
        scheme, _, encoded = header.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.credentials.get(user, "")
        # Compare even for unknown users, so timing does not tell which users exist.
        return secrets.compare_digest(password.encode(), expected.encode()) and user in self.credentials


class RequestSizeLimit:
    """Refuse request bodies over `max_bytes` with 413: by Content-Length, or while reading a chunked body."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.detail = f"request body is over this server's limit of {max_bytes} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"error": "request too large", "field": None, "detail": self.detail}, 413)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self.detail)  # FastAPI passes it on while reading the body
            return message

        return await self.app(scope, limited_receive, send)
