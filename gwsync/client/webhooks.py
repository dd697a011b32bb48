"""Verifying the webhooks gwsync sends to the main app (Standard Webhooks).

gwsync signs each event with the app's `whsec_…` secret: `webhook-id`,
`webhook-timestamp` (seconds; five minutes' tolerance either way, against replays) and
`webhook-signature` (`v1,<base64 HMAC-SHA256>` of `id.timestamp.body`, several allowed
while a secret rotates). The `standardwebhooks` package checks them; this module only
turns every way a delivery can be wrong into one exception, so an app's handler has one
thing to catch before it answers 400.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from standardwebhooks import webhooks


class WebhookError(Exception):
    """The delivery is not from gwsync (or not now): refuse it, do not act on it."""


class WebhookEvent(BaseModel):
    """A verified event: `type` (`account.connected`, `erasure.verified`, ...), whose
    account and user, and the fields of its type (kept as they came)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    account_id: str | None = None
    user_id: str | None = None
    erasure_id: str | None = None

    def field(self, name: str) -> Any:
        """A field of this event's type that the model does not name (`counts`, ...)."""
        return (self.model_extra or {}).get(name)


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookEvent:
    """The event in `body`, if its Standard Webhooks signature is valid for `secret`.

    `body` must be the raw bytes received (a re-serialised JSON does not verify).
    Raises `WebhookError` on a missing or bad header, a stale or future timestamp, a
    signature that does not match, or a body that is not an event.
    """
    try:
        verifier = webhooks.Webhook(secret)
    except (ValueError, binascii.Error, webhooks.EmptyWebhookSecretError) as exc:
        raise WebhookError("the secret is not a whsec_ base64 secret") from exc
    try:
        data = verifier.verify(body, dict(headers))
    except webhooks.WebhookVerificationError as exc:
        raise WebhookError(str(exc)) from None
    except (ValueError, binascii.Error, UnicodeDecodeError):  # a malformed signature or body
        raise WebhookError("malformed signature headers or body") from None
    try:
        return WebhookEvent.model_validate(data)
    except ValidationError:
        raise WebhookError("the body is not a gwsync event") from None
