"""Which Google account consented: only an id_token Google signed for us, now, is believed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import TemporaryError
from gwsync.connectors.identity import IdentityError, verified_sub
from gwsync.connectors.oauth import OAuthClient
from gwsync.emulator import signing
from tests.conftest import Emulator

SUB = "110169484474386276334"


@pytest.fixture
def client(emulator: Emulator) -> OAuthClient:
    """Our OAuth client, with Google's certificates served by the emulator."""
    state = emulator.state
    return OAuthClient(state.client_id, state.client_secret, Endpoints.at(emulator.url),
                       timeout_s=5)


def _claims(client: OAuthClient, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "https://accounts.google.com", "aud": client.client_id,
            "azp": client.client_id, "sub": SUB, "iat": now, "exp": now + 3600, **changes}


async def test_a_genuine_id_token_yields_its_sub(client: OAuthClient) -> None:
    """Signed with Google's published key, for our client, unexpired: its `sub`."""
    assert await verified_sub(client, signing.sign(_claims(client))) == SUB
    issuer_without_scheme = _claims(client, iss="accounts.google.com")
    assert await verified_sub(client, signing.sign(issuer_without_scheme)) == SUB


@pytest.mark.parametrize("case", ["forged", "audience", "issuer", "expired", "future",
                                  "no_sub", "unsigned"])
async def test_anything_else_is_refused(client: OAuthClient, case: str) -> None:
    """Another key, another audience or issuer, expired, issued in the future, no `sub`,
    or `alg: none`: IdentityError."""
    now = int(time.time())
    token = {
        "forged": lambda: signing.KeySet().sign(_claims(client)),
        "audience": lambda: signing.sign(_claims(client, aud="someone-else")),
        "issuer": lambda: signing.sign(_claims(client, iss="https://evil.example")),
        "expired": lambda: signing.sign(_claims(client, iat=now - 7200, exp=now - 3600)),
        "future": lambda: signing.sign(_claims(client, iat=now + 3600, exp=now + 7200)),
        "no_sub": lambda: signing.sign({k: v for k, v in _claims(client).items()
                                        if k != "sub"}),
        "unsigned": lambda: signing.sign(_claims(client)).rsplit(".", 1)[0] + ".",
    }[case]()
    with pytest.raises(IdentityError):
        await verified_sub(client, token)


async def test_unreachable_certificates_are_temporary(
    client: OAuthClient, emulator: Emulator
) -> None:
    """Google's certificates answering 503 is an outage, not a refusal."""
    emulator.state.fault_plan.add(signing.PEM_CERTS_PATH, 503)
    with pytest.raises(TemporaryError):
        await verified_sub(client, signing.sign(_claims(client)))
