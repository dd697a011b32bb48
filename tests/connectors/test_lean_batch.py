"""LeanBatch writes batch parts exactly as google-api-python-client does, only faster."""

from __future__ import annotations

from googleapiclient.http import BatchHttpRequest

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.gmail import _get_request
from gwsync.connectors.lean_batch import LeanBatch, new_batch


def _gmail() -> object:
    return client.service("gmail", "token-1", Endpoints.from_base("http://127.0.0.1:9"), 5)


def test_get_part_is_byte_for_byte_the_library_s() -> None:
    """A body-less GET part (with its bearer header) equals BatchHttpRequest's own."""
    service = _gmail()
    try:
        request = _get_request(service.users().messages(), "18c0000000000001")
        library = BatchHttpRequest()._serialize_request(request)
        assert LeanBatch()._serialize_request(request) == library
        assert "authorization: Bearer token-1" in library
    finally:
        service.close()


def test_new_batch_posts_where_the_service_would() -> None:
    """The lean batch goes to the batch URI the discovery document gives the service."""
    service = _gmail()
    try:
        expected = service.new_batch_http_request()._batch_uri
        assert new_batch(service, None)._batch_uri == expected == "http://127.0.0.1:9/batch"
    finally:
        service.close()
