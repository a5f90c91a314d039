"""Request bodies larger than the upload limit get 413 before anything parses them.

A declared Content-Length over the limit is refused at once; a body without one (chunked) is
counted as it streams in, and the read that passes the limit raises `BodyTooLarge` (an
HTTPException, so FastAPI's form parsing lets it through to the app's error handler).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, what: str) -> None:
        super().__init__(status_code=413, detail=f"{what}, over the limit of {limit} bytes (max_upload_bytes)")


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            refused = BodyTooLarge(self.max_bytes, f"the request body is {int(declared)} bytes")
            body = json.dumps({"detail": refused.detail}).encode()
            await send({
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            })
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes, f"the request body passed {received} bytes")
            return message

        await self.app(scope, counting_receive, send)
