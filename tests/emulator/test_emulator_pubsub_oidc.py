"""The ID tokens the emulator's Pub/Sub signs verify with google-auth against Google's
certs endpoints (either format), as Google's do."""

from __future__ import annotations

import asyncio

import google.auth.transport.requests
import pytest
from google.oauth2 import id_token

from gwsync.emulator import pubsub_oidc
from tests.emulator.support import Emulator

AUDIENCE, SENDER = "https://push.example/gmail", "push@demo.iam.gserviceaccount.com"


@pytest.mark.parametrize("path", ["/oauth2/v1/certs", "/oauth2/v3/certs"])
async def test_a_push_token_verifies_against_either_certs_endpoint(
    emulator: Emulator, path: str
) -> None:
    """RS256, Google's issuer, the audience and the verified service-account email."""
    token = pubsub_oidc.oidc_token(AUDIENCE, SENDER)
    claims = await asyncio.to_thread(
        id_token.verify_token, token, google.auth.transport.requests.Request(),
        audience=AUDIENCE, certs_url=emulator.url + path)
    assert claims["iss"] == "https://accounts.google.com"
    assert (claims["email"], claims["email_verified"]) == (SENDER, True)
    assert claims["exp"] > claims["iat"]


async def test_a_token_for_another_audience_does_not_verify(emulator: Emulator) -> None:
    """google-auth refuses a token whose `aud` is not the one asked for."""
    token = pubsub_oidc.oidc_token("https://elsewhere.example", SENDER)
    with pytest.raises(ValueError):
        await asyncio.to_thread(
            id_token.verify_token, token, google.auth.transport.requests.Request(),
            audience=AUDIENCE, certs_url=emulator.url + "/oauth2/v1/certs")
