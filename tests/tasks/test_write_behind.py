"""A sync writes each page while the next is fetched, one write at a time and in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gwsync.storage.accounts import FencedError
from gwsync.tasks.sync import write_behind


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.writing = 0
        self.most_at_once = 0
        self.writing_began = asyncio.Event()


async def _pages(log: _Log, n: int, fail_at: int | None = None) -> AsyncIterator[int]:
    for page in range(n):
        await asyncio.sleep(0.02)
        if page == fail_at:
            log.events.append(f"fetch {page} failed")
            raise TimeoutError("Google")
        log.events.append(f"fetched {page}")
        yield page


def _writer(log: _Log, fail_at: int | None = None):  # type: ignore[no-untyped-def]
    async def write(page: int) -> None:
        log.writing += 1
        log.most_at_once = max(log.most_at_once, log.writing)
        log.events.append(f"write {page}")
        log.writing_began.set()
        await asyncio.sleep(0.05)
        log.writing -= 1
        if page == fail_at:
            raise FencedError("erased")
        log.events.append(f"wrote {page}")
    return write


async def test_pages_are_written_in_order_while_the_next_is_fetched() -> None:
    """Page 1 is fetched during page 0's write; writes never overlap and keep order."""
    log = _Log()
    await write_behind(_pages(log, 3), _writer(log))
    assert [e for e in log.events if e.startswith("wrote")] == ["wrote 0", "wrote 1", "wrote 2"]
    assert log.events.index("fetched 1") < log.events.index("wrote 0")
    assert log.most_at_once == 1


async def test_a_failed_write_stops_the_run_before_another_page_is_written() -> None:
    """A fenced write surfaces at most one fetch later, and nothing after it is written."""
    log = _Log()
    with pytest.raises(FencedError):
        await write_behind(_pages(log, 5), _writer(log, fail_at=1))
    assert "write 2" not in log.events and "fetched 3" not in log.events


async def test_a_failed_fetch_saves_the_page_already_fetched_first() -> None:
    """The fetch error is raised only once the page before it is written (its checkpoint)."""
    log = _Log()
    with pytest.raises(TimeoutError):
        await write_behind(_pages(log, 5, fail_at=2), _writer(log))
    assert log.events[-1] == "wrote 1"


async def test_a_write_that_fails_beside_a_failed_fetch_is_what_the_run_reports() -> None:
    """As in sequence, the write's failure (the page before) comes first."""
    log = _Log()
    with pytest.raises(FencedError):
        await write_behind(_pages(log, 5, fail_at=2), _writer(log, fail_at=1))


async def test_a_cancelled_run_cancels_its_write() -> None:
    """A lost lock or an erasure abort leaves no write running behind the run."""
    log = _Log()
    run = asyncio.ensure_future(write_behind(_pages(log, 5), _writer(log)))
    await log.writing_began.wait()  # page 0's write under way, page 1 being fetched
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.1)
    assert "fetched 1" not in log.events and "wrote 0" not in log.events
