"""The ops page: the ops snapshot as one server-rendered HTML page, behind the admin token.

No JavaScript: the page reloads itself every 10 s (`<meta http-equiv="refresh">`), every
value is escaped, and each number sits in an element with a stable `data-metric` name so
that tests (and scrapers) can read it.

Signing in from a browser (OWASP ASVS L2, as Google's CASA review applies it): a browser
cannot send a bearer header, so the admin token is typed once into the `/ops/login` form
and POSTed, never put in a URL (addresses end up in proxy logs and browser history;
`?token=` is refused). A success answers with a cookie holding a random session id
(`secrets.token_urlsafe`, 256 bits) and a redirect to `/ops`. The cookie is `HttpOnly`,
`SameSite=Strict`, scoped to `/ops` and `Secure` unless `GWSYNC_OPS_COOKIE_SECURE=false`
(plain-http local use). The server keeps the session in Redis for 8 hours, under a key
that is an HMAC of the id keyed by a subkey HKDF derives from the admin token for this one
purpose: a copy of Redis holds no usable id, rotating the token signs everyone out, and
`POST /ops/logout` ends the session on the server. Failed sign-ins are limited per client
address (`MAX_FAILED_LOGINS` a minute, then 429 with `Retry-After`); a success is not
counted. Behind a proxy every client shares the proxy's address, so the limit is then
global, which errs on the side of refusing. Request logs carry route templates only.
Scripts may instead send `Authorization: Bearer $GWSYNC_ADMIN_TOKEN`; the API token never
opens this page.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from html import escape

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, Field

from gwsync.storage.ops_snapshot import OpsSnapshot
from gwsync.web.http import HttpError, bearer_ok, deps_of
from gwsync.web.parse import parse_form

COOKIE = "gwsync_ops"
SESSION_S = 8 * 3600
#: Failed sign-ins one client address may make in a window before it is answered 429.
MAX_FAILED_LOGINS = 5
LOGIN_WINDOW_S = 60
REFRESH_S = 10
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Content-Security-Policy":
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}
#: What `secrets.token_urlsafe(32)` returns; any other cookie value is not a session.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_HKDF_INFO = b"gwsync/ops-session/v1"


class LoginForm(BaseModel):
    """The sign-in form: one field, capped (an admin token is 43 characters)."""

    token: str = Field(default="", max_length=1024)


# -- sessions ------------------------------------------------------------------------------


def _admin_secret(request: web.Request) -> str | None:
    token = deps_of(request).settings.admin_token
    return token.get_secret_value() if token else None


def _session_key(request: web.Request, secret: str, session_id: str) -> str:
    """Where a session lives in Redis: an HMAC of its id under a subkey of the admin token,
    so the key neither is the id nor outlives a rotation of the token."""
    subkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                  info=_HKDF_INFO).derive(secret.encode())
    digest = hmac.new(subkey, session_id.encode(), hashlib.sha256).hexdigest()
    return f"{deps_of(request).settings.redis_prefix}:ops:session:{digest}"


def _cookie_session(request: web.Request) -> str | None:
    """The cookie's session id if it has the shape of one; anything else is no session."""
    value = request.cookies.get(COOKIE, "")
    return value if _SESSION_ID.fullmatch(value) else None


async def _session_ok(request: web.Request, secret: str | None) -> bool:
    session_id = _cookie_session(request)
    if not (secret and session_id):
        return False
    return bool(await deps_of(request).queue.redis.exists(
        _session_key(request, secret, session_id)))


async def _signed_in(request: web.Request, secret: str) -> web.Response:
    session_id = secrets.token_urlsafe(32)
    await deps_of(request).queue.redis.set(_session_key(request, secret, session_id), b"1",
                                           ex=SESSION_S)
    response = web.Response(status=303, headers={"Location": "/ops", **NO_STORE})
    response.set_cookie(COOKIE, session_id, max_age=SESSION_S, path="/ops", httponly=True,
                        samesite="Strict", secure=deps_of(request).settings.ops_cookie_secure)
    return response


async def _count_attempt(request: web.Request) -> int | None:
    """Count a sign-in attempt against its client address, before it is checked (so that
    parallel guesses are counted too); None while the window allows it, else the seconds
    until it ends."""
    settings = deps_of(request).settings
    key = f"{settings.redis_prefix}:ops:login-attempts:{request.remote or 'unknown'}"
    async with deps_of(request).queue.redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=LOGIN_WINDOW_S, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, attempts, ttl = await pipe.execute()
    return None if attempts <= MAX_FAILED_LOGINS else max(int(ttl), 1)


async def _uncount_attempt(request: web.Request) -> None:
    """A success is not a failed attempt."""
    settings = deps_of(request).settings
    key = f"{settings.redis_prefix}:ops:login-attempts:{request.remote or 'unknown'}"
    await deps_of(request).queue.redis.decr(key)


# -- routes --------------------------------------------------------------------------------


async def ops(request: web.Request) -> web.Response:
    secret = _admin_secret(request)
    if not (bearer_ok(request, secret) or await _session_ok(request, secret)):
        if request.headers.get("Authorization"):
            raise HttpError(401, "unauthorized", "the admin bearer token is required")
        return web.Response(status=303, headers={"Location": "/ops/login", **NO_STORE})
    snap = await deps_of(request).snapshot()
    return web.Response(text=render(snap), content_type="text/html", headers=NO_STORE)


async def login_form(request: web.Request) -> web.Response:
    """The form; a token in the address is refused, not used."""
    if "token" in request.query:
        return _login_page(400, "The token is not accepted in the address (addresses are "
                                "logged): type it here.")
    return _login_page(200, "")


async def login(request: web.Request) -> web.Response:
    """Sign in with the POSTed form, at most MAX_FAILED_LOGINS failures a minute."""
    retry_after = await _count_attempt(request)
    if retry_after is not None:
        return _login_page(429, f"Too many failed attempts; try again in {retry_after} s.",
                           {"Retry-After": str(retry_after)})
    offered = (await parse_form(request, LoginForm)).token
    secret = _admin_secret(request)
    if secret and hmac.compare_digest(offered.encode(), secret.encode()):
        await _uncount_attempt(request)
        return await _signed_in(request, secret)
    return _login_page(401, "That is not the admin token.")


async def logout(request: web.Request) -> web.Response:
    """End the session on the server, clear the cookie, and go back to the form."""
    secret, session_id = _admin_secret(request), _cookie_session(request)
    if secret and session_id:
        await deps_of(request).queue.redis.delete(_session_key(request, secret, session_id))
    response = web.Response(status=303, headers={"Location": "/ops/login", **NO_STORE})
    response.del_cookie(COOKIE, path="/ops", httponly=True, samesite="Strict",
                        secure=deps_of(request).settings.ops_cookie_secure)
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/ops", ops)
    router.add_get("/ops/login", login_form)
    router.add_post("/ops/login", login)
    router.add_post("/ops/logout", logout)


# -- rendering -----------------------------------------------------------------------------

CSS = """
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
 background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;
 justify-content:space-between;align-items:baseline}
header h1{font-size:20px;margin:0}header small{color:#b9c0cf}
main{padding:16px 24px;max-width:1320px;margin:auto}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}
.card b{display:block;font-size:28px}.card span{color:#5b6475;font-size:13px}
.card.warn b{color:#b3261e}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:16px;
 margin-top:16px}
section{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002}
h2{font-size:15px;margin:4px 0 8px}table{border-collapse:collapse;width:100%}
td,th{padding:4px 6px;border-bottom:1px solid #e6e8ec;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}p.none{color:#5b6475;margin:4px 0}
"""


def _card(name: str, label: str, value: float | int, warn: bool = False) -> str:
    cls = "card warn" if warn and value else "card"
    return (f'<div class="{cls}"><b data-metric="{escape(name)}">{escape(_num(value))}</b>'
            f"<span>{escape(label)}</span></div>")


def _num(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def age(seconds: float) -> str:
    """A duration as a person reads it: `42 s`, `3 m 12 s`, `5 h 02 m`."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} m"


def _table(title: str, metric: str, head: Iterable[str], rows: list[list[str]],
           empty: str) -> str:
    """A section; the last cell of each row is the number, named `<metric>.<first cell>`."""
    if not rows:
        return f'<section><h2>{escape(title)}</h2><p class="none">{escape(empty)}</p></section>'
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row[:-1])
        + f'<td class="n" data-metric="{escape(metric)}.{escape(row[0])}">{escape(row[-1])}'
        "</td></tr>" for row in rows)
    return (f"<section><h2>{escape(title)}</h2><table><tr>{ths}</tr>{body}</table>"
            "</section>")


def _pairs(mapping: dict[str, int]) -> list[list[str]]:
    return [[key, str(value)] for key, value in mapping.items()]


def _cards(s: OpsSnapshot) -> str:
    return "".join([
        _card("queue_depth", "jobs queued", s.queue_depth),
        _card("queue_due", "queued and due now", s.queue_due),
        _card("in_progress", "jobs running", s.in_progress),
        _card("finished_last_hour", "jobs finished, last hour", sum(s.finished_last_hour.values())),
        _card("sync_failures", "syncs failing", sum(f.count for f in s.failures), warn=True),
        _card("behind_schedule", "syncs behind schedule", sum(s.behind_schedule.values()),
              warn=True),
        _card("erasures_pending", "erasures pending", sum(p.count for p in s.erasures_pending)),
        _card("erasures_overdue", "erasures overdue", s.erasures_overdue, warn=True),
        _card("refused_reads", "reads refused, 24 h", sum(s.refused_reads.values()), warn=True),
        _card("app_webhooks_pending", "app webhooks retrying",
              sum(s.app_webhooks.get("pending", {}).values()), warn=True),
        _card("app_webhooks_failed", "app webhooks given up",
              sum(s.app_webhooks.get("failed", {}).values()), warn=True),
    ])


def _webhook_rows(s: OpsSnapshot) -> list[list[str]]:
    return [[type_, status, str(count)] for status, by_type in sorted(s.app_webhooks.items())
            for type_, count in sorted(by_type.items())]


def _sections(s: OpsSnapshot) -> str:
    failures = [[f.category, ", ".join(f"{k} {v}" for k, v in f.features.items()),
                 f.latest or "—", str(f.count)] for f in s.failures]
    pending = [[p.state, age(p.oldest_age_s), str(p.count)] for p in s.erasures_pending]
    return "".join([
        _table("Recent failures by error category", "failures",
               ("category", "features", "latest run", "syncs"), failures, "No failing syncs."),
        _table(f"Behind schedule (not synced within {age(s.behind_after_s)})", "behind",
               ("feature", "syncs"), _pairs(s.behind_schedule), "Every sync is on schedule."),
        _table(f"Erasures pending (deadline {age(s.erasure_deadline_s)})", "erasures_pending",
               ("state", "oldest", "erasures"), pending, "No erasure is pending."),
        _table("Webhooks to the app not delivered (oldest retrying "
               f"{age(s.app_webhook_oldest_pending_s)})", "app_webhooks",
               ("event", "status", "events"), _webhook_rows(s), "Every event was delivered."),
        _table("Throughput: jobs finished in the last hour", "finished",
               ("outcome", "jobs"), _pairs(s.finished_last_hour), "No job finished."),
        _table("Refused reads, last 24 h, by use", "refused", ("use", "reads"),
               _pairs(s.refused_reads), "No read was refused."),
        _table("Quota use per API", "quota", ("api", "units"), [],
               "Per-API quota use is reported by the workers as gwsync_quota_units_total "
               "and gwsync_quota_wait_seconds_total on their /metrics."),
        _table("Accounts by status", "accounts", ("status", "accounts"),
               _pairs(s.accounts_by_status), "No accounts."),
        _table("Syncs by status", "syncs", ("status", "syncs"), _pairs(s.syncs_by_status),
               "No syncs."),
        _table("Erasures by state", "erasures", ("state", "erasures"),
               _pairs(s.erasures_by_state), "No erasures."),
        _table("Records stored by feature", "records", ("feature", "records"),
               _pairs(s.records_by_feature), "No records stored."),
    ])


LOGOUT = ('<form method="post" action="/ops/logout"><button>Sign out</button></form>')


def render(s: OpsSnapshot) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gwsync ops</title><style>{CSS}</style></head><body>"
        f"<header><h1>gwsync ops</h1><small>queue {escape(s.queue_name)} · taken "
        f'<span data-metric="taken_at">{escape(s.taken_at)}</span> · refreshes every '
        f"{REFRESH_S} s</small>{LOGOUT}</header>"
        f'<main><div class="cards">{_cards(s)}</div><div class="grid">{_sections(s)}</div>'
        "</main></body></html>")


def _login_page(status: int, message: str, headers: dict[str, str] | None = None
                ) -> web.Response:
    note = f'<p class="none">{escape(message)}</p>' if message else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gwsync ops: '
        f"sign in</title><style>{CSS}</style></head><body><header><h1>gwsync ops</h1>"
        '</header><main><section><h2>Sign in with the admin token</h2>'
        f'{note}<form method="post" action="/ops/login"><input type="password" name="token" '
        'autocomplete="off" size="40" autofocus> <button>Sign in</button></form></section>'
        "</main></body></html>")
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={**NO_STORE, **(headers or {})})
