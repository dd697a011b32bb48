"""A typed async client of gwsync's API, for the main app (and the demo and tests).

`Client` calls the `/v1` routes and answers with the models of `gwsync.domain.api`, the
ones the web process answers with and the OpenAPI document describes; a refusal raises
`ApiError` carrying the `error` code. `verify_webhook` checks a webhook gwsync sent
(Standard Webhooks) and returns its event. The client imports no part of the service
(web, worker, tasks, storage, connectors): an app installs gwsync to use it, and runs
none of it.
"""

from gwsync.client.api import ApiError, Client
from gwsync.client.webhooks import WebhookError, WebhookEvent, verify_webhook

__all__ = ["ApiError", "Client", "WebhookError", "WebhookEvent", "verify_webhook"]
