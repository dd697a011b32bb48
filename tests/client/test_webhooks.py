"""`verify_webhook` accepts exactly what Standard Webhooks signs with the app's secret, and
refuses everything else with one exception."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from gwsync.client import WebhookError, verify_webhook

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
EVENT = {"type": "erasure.verified", "account_id": "a-1", "user_id": "user-42",
         "erasure_id": "e-1", "trigger": "revoked_at_google"}


def _signed(body: str, secret: str = SECRET, at: float | None = None,
            msg_id: str = "msg_1") -> dict[str, str]:
    """The headers gwsync sends with `body` (as the spec's reference signer makes them)."""
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body)}


def test_a_signed_event_verifies_and_is_parsed() -> None:
    """The event's type, account, user and erasure ids, and its other fields, come back."""
    body = json.dumps(EVENT)
    event = verify_webhook(body.encode(), _signed(body), SECRET)
    assert (event.type, event.account_id, event.user_id, event.erasure_id) == (
        "erasure.verified", "a-1", "user-42", "e-1")
    assert event.field("trigger") == "revoked_at_google"


def test_headers_are_matched_whatever_their_case() -> None:
    """HTTP header names are case-insensitive (frameworks hand them over capitalised)."""
    body = json.dumps(EVENT)
    headers = {k.title(): v for k, v in _signed(body).items()}
    assert verify_webhook(body, headers, SECRET).type == "erasure.verified"


def test_a_rotated_secret_is_one_of_several_signatures() -> None:
    """During a secret rotation the header carries several signatures; one match suffices."""
    body = json.dumps(EVENT)
    old = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    headers = _signed(body)
    headers["webhook-signature"] = (_signed(body, old)["webhook-signature"] + " "
                                    + headers["webhook-signature"])
    assert verify_webhook(body, headers, SECRET).type == "erasure.verified"


@pytest.mark.parametrize("tamper", [
    "body", "id", "wrong_secret", "stale", "future", "no_signature", "malformed_signature",
    "bad_timestamp", "not_an_event", "not_json",
])
def test_anything_but_a_fresh_valid_signature_is_refused(tamper: str) -> None:
    """A changed body or id, another secret, a timestamp over five minutes off, a missing or
    malformed header, or a body that is no event: WebhookError, nothing parsed."""
    body = json.dumps(EVENT)
    headers = _signed(body)
    if tamper == "body":
        body = body.replace("a-1", "a-2")
    elif tamper == "id":
        headers["webhook-id"] = "msg_2"
    elif tamper == "wrong_secret":
        headers = _signed(body, "whsec_" + base64.b64encode(b"x" * 24).decode())
    elif tamper in {"stale", "future"}:
        headers = _signed(body, at=time.time() + (-600 if tamper == "stale" else 600))
    elif tamper == "no_signature":
        del headers["webhook-signature"]
    elif tamper == "malformed_signature":
        headers["webhook-signature"] = "v1"
    elif tamper == "bad_timestamp":
        headers["webhook-timestamp"] = "soon"
    elif tamper in {"not_an_event", "not_json"}:
        body = json.dumps({"no": "type"}) if tamper == "not_an_event" else "{"
        headers = _signed(body)
    with pytest.raises(WebhookError):
        verify_webhook(body, headers, SECRET)


def test_a_secret_that_is_not_whsec_base64_is_refused() -> None:
    """A misconfigured secret is the app's error to see, not a pass."""
    body = json.dumps(EVENT)
    with pytest.raises(WebhookError):
        verify_webhook(body, _signed(body), "whsec_%%%")
