"""Incremental cost: after a full sync, k new messages → how many API calls the next sync
makes (Gmail history.list, then the new messages through one batch). Counted by the
emulator's call log, where a batch of n gets counts as n calls, as in Google's quota."""

from __future__ import annotations

from bench.harness import BenchError, Deployment, mail_scope
from bench.report import Row

NAME = "incremental cost"


async def run(dep: Deployment, n: int, k: int = 10) -> list[Row]:
    user, token = await dep.emulator.gmail_user(n)
    account_id = await dep.connect(token, mail_scope())
    await dep.start_worker()
    try:
        await dep.sync(account_id, "mail_activity")
        new = [{"from": f"New Sender <new.{i}@example.com>", "to": "bench@example.com",
                "subject": f"New message {i}", "body": "fresh"} for i in range(k)]
        await dep.emulator.admin("POST", f"/_emulator/users/{user}/gmail/messages",
                                 {"messages": new})
        await dep.emulator.calls(clear=True)
        state = await dep.sync(account_id, "mail_activity")
        calls = [c for c in await dep.emulator.calls() if c["user"] == user]
    finally:
        await dep.stop_workers()
    if state.stage != "incremental":
        raise BenchError("the second sync was not incremental")
    methods = sorted({c["method"].rsplit(".", 1)[-1] for c in calls})
    return [Row(NAME, f"API calls for k = {k} new messages after a {n:,}-message full sync "
                f"({', '.join(methods)})", str(len(calls)), f"≤ k + 3 = {k + 3}",
                len(calls) <= k + 3)]
