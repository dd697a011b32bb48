"""`GET /openapi.json` describes every route the app serves, from the models it runs on, and
every example in it is valid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gwsync.emulator.seed import seed_demo_user
from gwsync.web.openapi import UNDOCUMENTED, document
from tests.conftest import Emulator
from tests.helpers import USER, connect


def _registered(app: web.Application) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"}


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items()
            for method in item}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of `schema` that resolves the document's `#/components/...` refs."""
    return jsonschema.Draft202012Validator({**schema, "components": document()["components"]})


def _examples() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    for name, schema in document()["components"]["schemas"].items():
        for example in schema.get("examples", []):
            yield name, example, schema
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            for parameter in operation["parameters"]:
                for example in parameter["schema"].get("examples", []):
                    yield f"{method} {path} {parameter['name']}", example, parameter["schema"]


async def test_every_route_the_app_serves_is_documented(api: TestClient) -> None:
    """Every registered route but the ops page and metrics is in the document, and nothing
    else is."""
    served = _registered(api.app) - UNDOCUMENTED
    assert served == _documented()
    assert UNDOCUMENTED <= _registered(api.app)  # what is left out exists (and is left out)


def test_every_example_validates_against_its_schema() -> None:
    """Each answer model has an example, and each example validates against its schema."""
    examples = list(_examples())
    named = {name for name, _, _ in examples}
    answers = {"Connected", "AccountStatus", "SyncQueued", "ErasureStarted", "RecordsPage",
               "RecordCounts", "ErasureAnswer", "ConsentStart", "AccessLogPage", "Liveness",
               "Readiness", "WebhookAck", "ErrorBody"}
    assert answers <= named
    for name, example, schema in examples:
        errors = [e.message for e in _validator(schema).iter_errors(example)]
        assert not errors, (name, errors)


def test_the_document_is_openapi_3_1_with_refs_that_resolve() -> None:
    """Every `$ref` names a component, and every /v1 operation needs the app's token."""
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in doc["paths"].items():
        for operation in item.values():
            if path.startswith("/v1/"):
                assert operation["security"] == [{"apiToken": []}], path
                assert "401" in operation["responses"], path


async def test_the_document_is_served_without_a_token(api: TestClient) -> None:
    """`GET /openapi.json` answers anyone (it holds no secret and no data)."""
    resp = await api.get("/openapi.json", headers={"Authorization": ""})
    assert resp.status == 200
    assert await resp.json() == document()


@pytest.mark.parametrize("path", ["/v1/accounts/{account_id}"])
async def test_real_answers_validate_against_the_document(
    api: TestClient, emulator: Emulator, path: str
) -> None:
    """A connected account's answer, and a refusal, match the schemas the document gives."""
    grant = seed_demo_user(emulator.state, 2)
    account_id = await connect(api, grant.refresh_token)
    responses = document()["paths"][path]["get"]["responses"]
    resp = await api.get(f"/v1/accounts/{account_id}", params={"user_id": USER})
    _validator(responses["200"]["content"]["application/json"]["schema"]).validate(
        await resp.json())
    resp = await api.get(f"/v1/accounts/{account_id}", params={"user_id": "someone-else"})
    assert resp.status == 404
    _validator(responses["404"]["content"]["application/json"]["schema"]).validate(
        await resp.json())


async def test_a_long_query_is_refused_in_the_api_s_own_shape(api: TestClient) -> None:
    """A consent start with fields at their documented maxima, percent-encoded past 8 KiB,
    reaches the validators: a JSON 400 naming the field, never the server's plain text."""
    resp = await api.get("/v1/oauth/start", params={
        "user_id": "u", "features": "contacts", "redirect_uri": "https://app.example/" +
        "\u00e9" * 1900, "login_hint": "\u00e9" * 320})
    assert resp.status == 400
    assert (await resp.json())["error"] == "redirect_uri_not_allowed"
