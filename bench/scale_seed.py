"""Seeding the scale benchmark's fleet fast, into the tables production has.

Millions of rows go in as binary COPY (each row built from pre-encoded constant fields,
so the client costs little next to the server), one connection per table and several for
`records`, all at once. While they load, the bulk tables' indexes and constraints are
dropped; they are then rebuilt from the definitions read back from the catalog before the
drop — one sort per index instead of millions of index inserts — and checked to be the
very indexes the migrations made, so the paths measured afterwards use what production
uses. Tables stay logged (WAL written as production writes it): an UNLOGGED table would
make the measured writes cheaper than they are.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.harness import BenchError
from gwsync.core.timeutil import utcnow
from gwsync.domain.features import FEATURES
from gwsync.storage.models import DUE_NOW

#: The feature due in every account (the others were synced a minute ago).
DUE_FEATURE = "contacts"
RECORD_FEATURE = FEATURES["mail_activity"]
SCOPES = " ".join(sorted(f.scope for f in FEATURES.values()))
#: Loaded with their indexes and constraints dropped, rebuilt after (accounts is
#: referenced by the others' foreign keys, and small: it keeps its indexes).
BULK_TABLES = ("sync_states", "records", "record_counts")
#: Concurrent COPYs into `records`, and concurrent index builds (the machine has 2 cores;
#: each index build also gets PostgreSQL's own parallel workers).
RECORD_STREAMS = 2
INDEX_BUILDERS = 2
#: Per seeding session: sorts for the index builds in memory, commits not waited for
#: (durability of bench data is not under test; the rows are WAL-logged all the same).
SESSION = ("SET maintenance_work_mem = '1GB'", "SET synchronous_commit = off")
CHUNK_BYTES = 1 << 20
ACCOUNT_COLUMNS = ("id", "user_id", "subject_hash", "status", "generation", "granted_scopes",
                   "created_at", "updated_at")
STATE_COLUMNS = ("account_id", "feature", "status", "stage", "epoch", "started_at",
                 "last_synced_at", "next_due_at")
RECORD_COLUMNS = ("account_id", "feature", "kind", "external_id", "content", "data_use",
                  "scope", "source_api", "source_method", "fetched_at", "expires_at",
                  "policy_version", "epoch")
COUNT_COLUMNS = ("account_id", "feature", "records")
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _value(kind: str, value: Any) -> bytes:
    """One field in COPY's binary format for the column's type (length-prefixed)."""
    if kind in ("character varying", "text"):
        raw = str(value).encode()
    elif kind == "integer":
        raw = struct.pack("!i", value)
    elif kind == "bigint":
        raw = struct.pack("!q", value)
    elif kind == "bytea":
        raw = bytes(value)
    elif kind == "timestamp with time zone":
        delta = value - PG_EPOCH
        raw = struct.pack("!q", (delta.days * 86_400 + delta.seconds) * 1_000_000
                          + delta.microseconds)
    else:
        raise BenchError(f"the seeder cannot encode a {kind} column")
    return struct.pack("!i", len(raw)) + raw


class Encoder:
    """Encodes rows of one table in the column order given, by the catalog's types."""

    def __init__(self, types: dict[str, str], columns: Sequence[str]) -> None:
        self.kinds = [types[c] for c in columns]
        self.count = struct.pack("!h", len(columns))

    def row(self, values: Sequence[Any]) -> bytes:
        return self.count + b"".join(_value(k, v) for k, v in zip(self.kinds, values,
                                                                   strict=True))

    def parts(self, values: Sequence[Any], start: int, stop: int) -> bytes:
        """The encoded fields values[start:stop] (a constant run inside a row)."""
        return b"".join(_value(k, v) for k, v in zip(self.kinds[start:stop],
                                                     values[start:stop], strict=True))


async def _types(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    rows = await conn.fetch("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_name = $1", table)
    return {r["column_name"]: r["data_type"] for r in rows}


def _chunks(rows: Iterable[bytes]) -> Iterator[bytes]:
    """Rows framed as one binary COPY stream, in ~1 MB pieces."""
    piece, size = [HEADER], len(HEADER)
    for row in rows:
        piece.append(row)
        size += len(row)
        if size >= CHUNK_BYTES:
            yield b"".join(piece)
            piece, size = [], 0
    piece.append(TRAILER)
    yield b"".join(piece)


async def _stream(rows: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in _chunks(rows):
        yield chunk
        await asyncio.sleep(0)  # let the other COPYs' connections send theirs


async def _copy(dsn: str, table: str, columns: Sequence[str], rows: Iterable[bytes]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in SESSION:
            await conn.execute(statement)
        await conn.copy_to_table(table, source=_stream(rows), columns=list(columns),
                                 format="binary")
    finally:
        await conn.close()


def _account_rows(enc: Encoder, ids: list[str]) -> Iterator[bytes]:
    now = utcnow()
    for account_id in ids:
        yield enc.row((account_id, f"bench-{account_id[:8]}",
                       account_id.replace("-", "")[:64], "active", 1, SCOPES, now, now))


def _state_rows(enc: Encoder, ids: list[str], interval: timedelta) -> Iterator[bytes]:
    now = utcnow()
    old, recent = now - interval - timedelta(minutes=1), now - timedelta(minutes=1)
    due = ("ok", "incremental", 1, old, old, DUE_NOW)
    fresh = ("ok", "incremental", 1, recent, recent, recent + interval)
    tails = {name: enc.parts(("", name, *(due if name == DUE_FEATURE else fresh)), 1, 8)
             for name in FEATURES}
    for account_id in ids:
        head = enc.count + _value("character varying", account_id)
        for tail in tails.values():
            yield head + tail


def record_rows(enc: Encoder, ids: list[str], per_account: int) -> Iterator[bytes]:
    """`per_account` mail records of small dummy ciphertext for each account."""
    now, feature = utcnow(), RECORD_FEATURE
    values = ("", feature.name, "message", "", os.urandom(48), feature.data_use,
              feature.scope, feature.api, feature.source_method, now,
              now + feature.retention, "bench", 1)
    middle, tail = enc.parts(values, 1, 3), enc.parts(values, 4, 13)
    external = [_value("character varying", f"m{n:07d}") + tail for n in range(per_account)]
    for account_id in ids:
        head = enc.count + _value("character varying", account_id) + middle
        yield from (head + rest for rest in external)


async def record_encoder(conn: asyncpg.Connection) -> Encoder:
    return Encoder(await _types(conn, "records"), RECORD_COLUMNS)


async def copy_records(dsn: str, ids: list[str], per_account: int) -> None:
    """Records for accounts that exist, with every index in place (a normal write)."""
    conn = await asyncpg.connect(dsn)
    try:
        enc = await record_encoder(conn)
    finally:
        await conn.close()
    await _copy(dsn, "records", RECORD_COLUMNS, record_rows(enc, ids, per_account))


class _Definitions:
    """A table's indexes and constraints as the catalog defines them, to drop and rebuild."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.indexes: list[tuple[str, str]] = []  # (name, CREATE INDEX …), plain ones
        self.keys: list[tuple[str, str, str]] = []  # (name, PRIMARY KEY|UNIQUE, CREATE …)
        self.foreign: list[tuple[str, str]] = []  # (name, FOREIGN KEY … REFERENCES …)

    async def read(self, conn: asyncpg.Connection) -> _Definitions:
        referenced = await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE "
                                         "confrelid = $1::regclass AND contype = 'f'",
                                         self.table)
        if referenced:
            raise BenchError(f"{self.table} is referenced by foreign keys: not a bulk table")
        for r in await conn.fetch(
                "SELECT conname, contype::text, pg_get_constraintdef(oid) AS def, "
                "pg_get_indexdef(conindid) AS idx FROM pg_constraint "
                "WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'f') "
                "ORDER BY conname", self.table):
            if r["contype"] == "f":
                self.foreign.append((r["conname"], r["def"]))
            else:
                kind = "PRIMARY KEY" if r["contype"] == "p" else "UNIQUE"
                self.keys.append((r["conname"], kind, r["idx"]))
        self.indexes = [(r["name"], r["def"]) for r in await conn.fetch(
            "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS def FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass AND "
            "NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND "
            "c.conrelid = x.indrelid) ORDER BY 1", self.table)]
        return self

    async def drop(self, conn: asyncpg.Connection) -> None:
        for name, *_ in (*self.foreign, *self.keys):
            await conn.execute(f'ALTER TABLE {self.table} DROP CONSTRAINT "{name}"')
        for name, _ in self.indexes:
            await conn.execute(f'DROP INDEX "{name}"')

    def builds(self) -> list[str]:
        return [d for _, d in self.indexes] + [d for _, _, d in self.keys]

    async def constrain(self, conn: asyncpg.Connection) -> None:
        """Each key onto its rebuilt index, then each foreign key (validated, as made)."""
        for name, kind, _ in self.keys:
            await conn.execute(f'ALTER TABLE {self.table} ADD CONSTRAINT "{name}" {kind} '
                               f'USING INDEX "{name}"')
        for name, definition in self.foreign:
            await conn.execute(f'ALTER TABLE {self.table} ADD CONSTRAINT "{name}" '
                               f"{definition}")

    def same_as(self, other: _Definitions) -> bool:
        return (self.indexes, self.keys, self.foreign) == (
            other.indexes, other.keys, other.foreign)


async def _build(dsn: str, statements: list[str]) -> None:
    """Run the CREATE INDEX statements on INDEX_BUILDERS connections at once."""
    todo = list(reversed(statements))

    async def builder() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in SESSION:
                await conn.execute(statement)
            while todo:
                await conn.execute(todo.pop())
        finally:
            await conn.close()

    await asyncio.gather(*(builder() for _ in range(INDEX_BUILDERS)))


async def _load(dsn: str, ids: list[str], per_account: int, interval: timedelta,
                types: dict[str, dict[str, str]]) -> None:
    accounts = Encoder(types["accounts"], ACCOUNT_COLUMNS)
    states = Encoder(types["sync_states"], STATE_COLUMNS)
    records = Encoder(types["records"], RECORD_COLUMNS)
    counts = Encoder(types["record_counts"], COUNT_COLUMNS)
    step = -(-len(ids) // RECORD_STREAMS)
    await asyncio.gather(
        _copy(dsn, "accounts", ACCOUNT_COLUMNS, _account_rows(accounts, ids)),
        _copy(dsn, "sync_states", STATE_COLUMNS, _state_rows(states, ids, interval)),
        _copy(dsn, "record_counts", COUNT_COLUMNS,
              (counts.row((i, RECORD_FEATURE.name, per_account)) for i in ids)),
        *(_copy(dsn, "records", RECORD_COLUMNS,
                record_rows(records, ids[start:start + step], per_account))
          for start in range(0, len(ids), step)))


async def _rebuilt(dsn: str, conn: asyncpg.Connection, before: list[_Definitions]) -> None:
    """The dropped indexes built again, then the constraints on them — checked to be
    exactly what the catalog held before the drop."""
    await _build(dsn, [s for table in before for s in table.builds()])
    for table in before:
        await table.constrain(conn)
    after = [await _Definitions(t.table).read(conn) for t in before]
    if not all(b.same_as(a) for b, a in zip(before, after, strict=True)):
        raise BenchError("the rebuilt indexes differ from the migrations' ones")


async def seed(dsn: str, ids: list[str], per_account: int,
               interval: timedelta) -> dict[str, float]:
    """Bulk-load accounts, their sync states, records and record counts; rebuild the
    bulk tables' indexes; VACUUM ANALYZE, as autovacuum would leave the tables.
    Returns the seconds each step took ({"copy", "index", "vacuum"})."""
    conn = await asyncpg.connect(dsn)
    took: dict[str, float] = {}
    try:
        types = {t: await _types(conn, t) for t in ("accounts", *BULK_TABLES)}
        before = [await _Definitions(t).read(conn) for t in BULK_TABLES]
        for definitions in before:
            await definitions.drop(conn)
        started = time.perf_counter()
        await _load(dsn, ids, per_account, interval, types)
        took["copy"] = time.perf_counter() - started
        await _rebuilt(dsn, conn, before)
        took["index"] = time.perf_counter() - started - took["copy"]
        # Statistics, and the visibility map that lets the grouped counts read indexes
        # only: what autovacuum leaves in production (this machine's server has it off).
        started = time.perf_counter()
        for table in ("accounts", *BULK_TABLES):
            await conn.execute(f"VACUUM ANALYZE {table}")
        took["vacuum"] = time.perf_counter() - started
    finally:
        await conn.close()
    return took
