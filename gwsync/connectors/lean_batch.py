"""google-api-python-client's batch request, with its parts written without `email`.

`BatchHttpRequest` writes every inner request through `email.generator`, whose header
folding cost more worker CPU than everything else in a Gmail full sync (profiled in
bench/ingest.py). For requests without a body (all our batched calls are GETs) the part
is a status line and a few headers, which plain formatting writes byte for byte the same
(tests/connectors/test_lean_batch.py compares it with the library's own output, so an
upgrade that changes the format fails there). Requests with a body keep the library's path.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from googleapiclient import _auth
from googleapiclient.discovery import Resource
from googleapiclient.http import BatchHttpRequest


class LeanBatch(BatchHttpRequest):
    """A `BatchHttpRequest` whose body-less parts skip the `email` package."""

    def _serialize_request(self, request: Any) -> str:
        if request.body is not None:
            return str(super()._serialize_request(request))
        parsed = urllib.parse.urlparse(request.uri)
        target = urllib.parse.urlunparse(("", "", parsed.path, parsed.params, parsed.query, ""))
        headers = dict(request.headers)
        if request.http is not None:
            credentials = _auth.get_credentials_from_http(request.http)
            if credentials is not None:
                _auth.apply_credentials(credentials, headers)
        content_type = headers.pop("content-type", "application/json")
        lines = [f"{request.method} {target} HTTP/1.1", f"Content-Type: {content_type}",
                 "MIME-Version: 1.0"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        lines.append(f"Host: {parsed.netloc}")
        return "\n".join(lines) + "\n\n"


def new_batch(service: Resource, callback: Any) -> LeanBatch:
    """A lean batch posting where `service.new_batch_http_request` would."""
    uri = service.new_batch_http_request()._batch_uri  # the discovery document's batchPath
    return LeanBatch(callback=callback, batch_uri=uri)
