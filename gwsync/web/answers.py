"""Answers shaped by the models of `gwsync.domain.api`, the ones the OpenAPI document names.

A handler that builds its answer here cannot send a key the document does not describe,
nor leave out one it promises: the model validates what the handler passes.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from gwsync.domain.api import RecordCounts, RecordsPage
from gwsync.storage.records import ReadResult


def answer(body: BaseModel, status: int = 200) -> web.Response:
    """`body` as JSON with `status`."""
    return web.Response(text=body.model_dump_json(), status=status,
                        content_type="application/json")


def read_answer(result: ReadResult) -> web.Response:
    """A purpose-checked read: a page of records, or counts only (`aggregate_ops`)."""
    if result.counts is not None:
        return answer(RecordCounts(counts=result.counts))
    return answer(RecordsPage.model_validate({"records": result.items,
                                              "next_cursor": result.next_cursor}))
