"""What the web and worker processes share: one place that opens and closes it all."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.oauth import OAuthClient
from gwsync.connectors.quota import Limiter, limiter_for
from gwsync.storage.db import SessionFactory, create_engine, session_factory
from gwsync.storage.records import RecordStore
from gwsync.worker import metrics, queue
from gwsync.worker.settings import Settings


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
    #: Google quota shared through Redis; None when `quota_enabled` is off.
    limiter: Limiter | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Deps:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        endpoints = Endpoints.from_base(settings.google_base_url)
        secret = settings.google_client_secret
        redis = await queue.connect(settings.redis_url, settings.queue_name)
        return cls(
            settings=settings, engine=engine, sessions=sessions,
            store=RecordStore(sessions, settings.master_key, settings.policy_version,
                              on_decision=metrics.purpose_decision),
            queue=queue.Queue(redis, settings.redis_prefix, settings.queue_name),
            oauth=OAuthClient(settings.google_client_id or "",
                              secret.get_secret_value() if secret else "", endpoints,
                              settings.http_timeout_s),
            http=aiohttp.ClientSession(), endpoints=endpoints,
            limiter=limiter_for(redis, settings),
        )

    async def close(self) -> None:
        await self.http.close()
        await self.queue.redis.aclose()
        await self.engine.dispose()
