"""The erasure proof's scanners see what they look for, wherever it is stored."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import cast

from sqlalchemy import text

from gwsync.tasks.deps import Deps
from tests.erasure_proof import database_hits, redis_hits


async def test_the_database_scan_covers_a_table_the_models_do_not_know(deps: Deps) -> None:
    """A copy kept in a table added later is found: the scan reflects the live schema."""
    needle = f"stray-{uuid.uuid4()}"
    async with deps.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE stray_copy (note TEXT, blob BYTEA)"
                                if deps.engine.dialect.name == "postgresql" else
                                "CREATE TABLE stray_copy (note TEXT, blob BLOB)"))
        await conn.execute(text("INSERT INTO stray_copy VALUES (:note, :blob)"),
                           {"note": f"copy of {needle}", "blob": needle.encode()})
    try:
        assert await database_hits(deps.engine, [needle, "absent-needle"]) == {
            ("stray_copy", "note", needle), ("stray_copy", "blob", needle)}
    finally:
        async with deps.engine.begin() as conn:
            await conn.execute(text("DROP TABLE stray_copy"))


async def test_the_redis_scan_reads_every_type_of_value(deps: Deps) -> None:
    """A needle in a string, hash, list, sorted set, set, stream or key name is found."""
    redis, prefix, needle = deps.queue.redis, deps.settings.redis_prefix, "Rd5ScanNeedle"
    key = {kind: f"{prefix}:{kind}" for kind in ("string", "hash", "list", "zset", "set",
                                                 "stream", "clean")}
    await redis.set(key["string"], f"x{needle}x")
    await cast(Awaitable[int], redis.hset(key["hash"], "field", needle))
    await cast(Awaitable[int], redis.rpush(key["list"], "a", needle))
    await redis.zadd(key["zset"], {needle: 1.0})
    await cast(Awaitable[int], redis.sadd(key["set"], needle))
    await redis.xadd(key["stream"], {"event": needle})
    await redis.set(key["clean"], "nothing here")
    await redis.set(f"{prefix}:name:{needle}", "1")
    hits = {k for k, _ in await redis_hits(redis, prefix, [needle])}
    assert hits == {*key.values(), f"{prefix}:name:{needle}"} - {key["clean"]}
