"""Google's latest word on what a grant covers, applied: lost scopes switch features off.

A user can remove one scope of a grant at any time (granular consent, or Google's
account page). When a token response stops listing a scope, the features that needed
it stop syncing and their records are erased — the rest of the account is untouched.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import oauth
from gwsync.connectors.errors import GoogleError, RevokedError
from gwsync.core import logs
from gwsync.domain.features import FEATURES
from gwsync.storage import accounts
from gwsync.storage.models import Account, SyncState
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.grants")


async def apply_granted(deps: Deps, account_id: str, granted: frozenset[str]) -> list[str]:
    """Record `granted` as the account's scopes; erase the features that lost theirs."""
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        if account is None or account.status != accounts.ACTIVE:
            return []
        before = frozenset(account.granted_scopes.split())
        account.granted_scopes = " ".join(sorted(granted))
        subject = account.subject_hash
        lost = [f.name for f in FEATURES.values()
                if f.scope in before and f.scope not in granted]
        await _announce_lost(deps, session, account, lost)
    if lost:
        log.info("scopes_withdrawn", account_id=account_id, features=lost)
        await erase.request(deps, [account_id], subject_hash=subject,
                            trigger="scope_withdrawn", scope={"features": lost})
    return lost


async def _announce_lost(deps: Deps, session: AsyncSession, account: Account,
                         lost: list[str]) -> None:
    """`feature.needs_permission` for each lost feature the app has not yet heard of (a
    sync that met the refusal announced its own feature already)."""
    for name in lost:
        state = await session.get(SyncState, (account.id, name))
        if state is None or state.status != "needs_permission":
            await deps.outbox.add(session, "feature.needs_permission", account.id,
                                  account.user_id, data={"feature": name,
                                                         "scope": FEATURES[name].scope})


async def recheck(deps: Deps, account_id: str, refresh_token: str) -> list[str]:
    """Ask Google which scopes the grant still covers, and apply the answer.

    Only a definite answer changes anything: an outage leaves the account as it was.
    """
    try:
        granted = await oauth.granted_scopes(deps.oauth, refresh_token, deps.http)
    except RevokedError:
        raise
    except GoogleError as exc:
        log.warning("grant_recheck_failed", account_id=account_id, category=str(exc.category))
        return []
    return await apply_granted(deps, account_id, granted)
