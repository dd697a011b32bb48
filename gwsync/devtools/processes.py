"""Child processes of gwsync's own tools (the demo, the benchmarks, the tests)."""

from __future__ import annotations

import asyncio


async def stop(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> None:
    """SIGTERM (arq finishes or cancels its jobs), then SIGKILL if it does not go in time."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
