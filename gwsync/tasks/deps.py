"""What the web and worker processes share: one place that opens and closes it all."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.oauth import OAuthClient
from gwsync.connectors.quota import Limiter, limiter_for
from gwsync.connectors.registry import ConnectorOptions
from gwsync.core import keyring, queue
from gwsync.core.settings import Settings
from gwsync.domain import purpose
from gwsync.storage import pseudonyms
from gwsync.storage.db import SessionFactory, create_engine, session_factory
from gwsync.storage.ledger import Ledger
from gwsync.storage.ops_snapshot import OpsSnapshot, Sources, settle, take
from gwsync.storage.outbox import Outbox
from gwsync.storage.records import RecordStore


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    store: RecordStore
    queue: queue.Queue
    oauth: OAuthClient
    http: aiohttp.ClientSession
    endpoints: Endpoints
    #: The master keys and the pseudonym key (gwsync/core/keyring.py).
    keyring: keyring.Keyring
    #: Google quota shared through Redis; None when `quota_enabled` is off.
    limiter: Limiter | None = None
    #: Events for the main app; adds nothing unless GWSYNC_APP_WEBHOOK_URL is set.
    outbox: Outbox = Outbox(None)
    #: Where every erasure is recorded outside the main database; None when unset.
    ledger: Ledger | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Deps:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        endpoints = Endpoints.from_base(settings.google_base_url)
        secret = settings.google_client_secret
        redis = await queue.connect(settings.redis_url, settings.queue_name)
        ring = await pseudonyms.load(sessions, settings.keyring)
        keyring.install(ring)
        return cls(
            settings=settings, engine=engine, sessions=sessions, keyring=ring,
            store=RecordStore(sessions, ring, settings.policy_version,
                              on_decision=purpose.count_decision),
            queue=queue.Queue(redis, settings.redis_prefix, settings.queue_name),
            oauth=OAuthClient(settings.google_client_id or "",
                              secret.get_secret_value() if secret else "", endpoints,
                              settings.http_timeout_s),
            http=aiohttp.ClientSession(), endpoints=endpoints,
            limiter=limiter_for(redis, settings),
            outbox=Outbox(ring if settings.app_webhooks else None),
            ledger=(await Ledger.open(settings.erasure_ledger_url)
                    if settings.erasure_ledger_url else None),
        )

    @property
    def connector_options(self) -> ConnectorOptions:
        return ConnectorOptions(self.endpoints, self.settings.http_timeout_s,
                                self.settings.sync_page_size, self.settings.gmail_max_in_flight)

    @property
    def ops_sources(self) -> Sources:
        """What the ops snapshot reads, for the ops page, `/metrics` and the worker."""
        return Sources(self.sessions, self.queue.redis, self.queue.prefix,
                       self.queue.queue_name, self.settings.sync_interval_s)

    async def snapshot(self) -> OpsSnapshot:
        """The ops picture of the deployment these deps are wired to."""
        return await take(self.ops_sources)

    async def close(self) -> None:
        await settle()
        await self.http.close()
        await self.queue.redis.aclose()
        await self.engine.dispose()
        if self.ledger is not None:
            await self.ledger.close()
