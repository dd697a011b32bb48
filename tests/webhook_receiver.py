"""A stand-in for the main app's webhook endpoint: it verifies every delivery with
`gwsync.client.verify_webhook` (the `standardwebhooks` package underneath), as the app
would, and can be told to fail."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gwsync.client import WebhookError, verify_webhook

#: The secret the tests configure (`whsec_` + base64 of 32 bytes).
SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


@dataclass
class Delivery:
    webhook_id: str
    body: dict[str, Any]
    raw: str


@dataclass
class Receiver:
    url: str = ""
    #: Deliveries whose signature verified, in the order they arrived.
    verified: list[Delivery] = field(default_factory=list)
    #: Every webhook-id that arrived, verified or not, with the status answered.
    attempts: list[tuple[str, int]] = field(default_factory=list)
    #: Answer 500 to this many deliveries (then 204); -1: always.
    fail_next: int = 0
    unsigned: int = 0

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [d.body for d in self.verified if d.body["type"] == type_]

    def types(self) -> list[str]:
        return [d.body["type"] for d in self.verified]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        webhook_id = request.headers.get("webhook-id", "")
        try:
            body = verify_webhook(raw, request.headers, SECRET).model_dump(exclude_unset=True)
        except WebhookError:
            self.unsigned += 1
            self.attempts.append((webhook_id, 401))
            return web.Response(status=401)
        if self.fail_next:
            self.fail_next -= 1 if self.fail_next > 0 else 0
            self.attempts.append((webhook_id, 500))
            return web.Response(status=500, text="down for maintenance")
        self.attempts.append((webhook_id, 204))
        self.verified.append(Delivery(webhook_id, body, raw))
        return web.Response(status=204)


async def serve_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hooks"
    yield receiver
    await runner.cleanup()
