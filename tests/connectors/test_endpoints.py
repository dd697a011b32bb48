"""Where Google is: its real hosts, or one origin that speaks Google's paths."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from gwsync.connectors.client import service
from gwsync.connectors.endpoints import Endpoints

BASE = "http://127.0.0.1:9/"
ORIGIN = "http://127.0.0.1:9"
APIS = ("people", "gmail", "calendar", "drive")


def test_no_base_means_googles_real_hosts() -> None:
    """Without a base URL, OAuth and the APIs are at Google's documented addresses."""
    google = Endpoints.from_base(None)
    assert google.token == "https://oauth2.googleapis.com/token"
    assert google.revoke == "https://oauth2.googleapis.com/revoke"
    assert google.authorize == "https://accounts.google.com/o/oauth2/v2/auth"
    assert google.certs == "https://www.googleapis.com/oauth2/v1/certs"
    assert google.api_roots == {
        "people": "https://people.googleapis.com/",
        "gmail": "https://gmail.googleapis.com/",
        "calendar": "https://www.googleapis.com/calendar/v3/",
        "drive": "https://www.googleapis.com/drive/v3/",
    }


def test_an_empty_base_also_means_google() -> None:
    """An empty base URL is treated like none at all."""
    assert Endpoints.from_base("") == Endpoints.google()


def test_googles_endpoints_are_all_https_on_google_domains() -> None:
    """Every real endpoint is HTTPS on a google.com or googleapis.com host."""
    for url in Endpoints.google().urls():
        parts = urlsplit(url)
        assert parts.scheme == "https", url
        assert parts.hostname is not None
        assert parts.hostname.endswith((".googleapis.com", ".google.com")), url


@pytest.mark.parametrize("base", [BASE, ORIGIN])
def test_every_url_goes_to_the_base_origin(base: str) -> None:
    """With a base URL, token, revoke, authorize, batch, the RISC discovery document,
    Google's signing certificates and every API root are on that origin."""
    endpoints = Endpoints.from_base(base)
    urls = endpoints.urls()
    assert len(urls) == 6 + len(APIS)
    assert endpoints.certs == f"{ORIGIN}/oauth2/v1/certs"
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:9"), url
        assert "//" not in parts.path, url


def test_the_base_origin_speaks_googles_paths() -> None:
    """Each endpoint keeps Google's own path on the base origin."""
    endpoints = Endpoints.from_base(BASE)
    assert endpoints.token == f"{ORIGIN}/token"
    assert endpoints.revoke == f"{ORIGIN}/revoke"
    assert endpoints.authorize == f"{ORIGIN}/o/oauth2/v2/auth"
    assert endpoints.api_roots == {
        "people": f"{ORIGIN}/",
        "gmail": f"{ORIGIN}/",
        "calendar": f"{ORIGIN}/calendar/v3/",
        "drive": f"{ORIGIN}/drive/v3/",
    }
    assert endpoints.batch_root == ORIGIN


@pytest.mark.parametrize("api", APIS)
def test_api_clients_built_for_a_base_call_that_origin(api: str) -> None:
    """A google-api-python-client service built for the base sends API requests there."""
    client = service(api, "ya29.test", Endpoints.from_base(BASE), timeout_s=1)
    try:
        assert client._baseUrl == Endpoints.from_base(BASE).api_roots[api]
    finally:
        client.close()


@pytest.mark.parametrize("api", APIS)
def test_batch_requests_of_a_service_go_to_the_base_origin(api: str) -> None:
    """A batch request from a service built for the base goes to that origin's `/batch` path."""
    client = service(api, "ya29.test", Endpoints.from_base(BASE), timeout_s=1)
    try:
        batch_uri = client.new_batch_http_request()._batch_uri
    finally:
        client.close()
    parts = urlsplit(batch_uri)
    assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:9")
    assert parts.path.startswith("/batch")
