"""Real `gwsync worker` processes whose log lines a test can count."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gwsync.core.settings import Settings
from gwsync.devtools import processes
from tests.helpers import start_worker


@dataclass
class Worker:
    """A real `gwsync worker` process and every log line it wrote so far."""

    proc: asyncio.subprocess.Process
    lines: list[str]
    reader: asyncio.Task[None]

    def count(self, *fragments: str) -> int:
        return sum(all(f in line for f in fragments) for line in self.lines)


async def logged_worker(settings: Settings, **env: str) -> Worker:
    """Start a worker and return once it polls the queue (arq logs Redis' version first)."""
    proc = await start_worker(settings, **env)
    lines: list[str] = []
    ready = asyncio.Event()

    async def drain() -> None:  # also keeps the pipe from filling up and blocking the worker
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode(errors="replace"))
            ready.set() if "redis_version" in lines[-1] else None
    worker = Worker(proc, lines, asyncio.create_task(drain()))
    try:
        await asyncio.wait_for(ready.wait(), 30)
    except TimeoutError:
        await stop_workers(worker)
        raise AssertionError("worker did not start:\n" + "".join(lines[-20:])) from None
    return worker


async def logged_workers(settings: Settings, n: int, **env: str) -> list[Worker]:
    """`n` workers started side by side."""
    return list(await asyncio.gather(*(logged_worker(settings, **env) for _ in range(n))))


async def stop_workers(*workers: Worker) -> None:
    """Stop each worker and wait until its log is read to the end."""
    for worker in workers:
        await processes.stop(worker.proc)
        await worker.reader
