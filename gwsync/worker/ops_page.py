"""The ops page: the ops snapshot as one server-rendered HTML page, behind the admin token.

No JavaScript: the page reloads itself every 10 s (`<meta http-equiv="refresh">`), every
value is escaped, and each number sits in an element with a stable `data-metric` name so
that tests (and scrapers) can read it.

Signing in from a browser: a browser cannot send a bearer header, so `/ops/login` takes
the admin token once (a form POST, or `?token=` for a scripted or headless browser) and
answers with an HttpOnly, SameSite=Strict cookie scoped to `/ops` and a redirect to
`/ops`, so the token leaves the address bar at once. The cookie does not hold the token:
it holds an expiry and an HMAC of it keyed by the token, so a leaked cookie neither
reveals the token nor outlives its 8 hours, and rotating the token signs everyone out.
Request logs carry route templates only, never query strings. Scripts may instead send
`Authorization: Bearer $GWSYNC_ADMIN_TOKEN`; the API token never opens this page.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from html import escape

from aiohttp import web

from gwsync.worker import ops_snapshot
from gwsync.worker.ops_snapshot import OpsSnapshot
from gwsync.worker.web import ApiError, _bearer_ok, deps_of

COOKIE = "gwsync_ops"
SESSION_S = 8 * 3600
REFRESH_S = 10
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Content-Security-Policy":
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}


# -- who may look --------------------------------------------------------------------------


def _admin_secret(request: web.Request) -> str | None:
    token = deps_of(request).settings.admin_token
    return token.get_secret_value() if token else None


def _sign(secret: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"ops-session:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _cookie_ok(request: web.Request, secret: str | None) -> bool:
    value = request.cookies.get(COOKIE, "")
    expires, _, _mac = value.partition(".")
    if not (secret and expires.isdigit() and int(expires) > time.time()):
        return False
    return hmac.compare_digest(value.encode(), _sign(secret, int(expires)).encode())


def _signed_in(secret: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/ops", **NO_STORE})
    expires = int(time.time()) + SESSION_S
    response.set_cookie(COOKIE, _sign(secret, expires), max_age=SESSION_S, path="/ops",
                        httponly=True, samesite="Strict")
    return response


# -- routes --------------------------------------------------------------------------------


async def ops(request: web.Request) -> web.Response:
    secret = _admin_secret(request)
    if not (_bearer_ok(request, secret) or _cookie_ok(request, secret)):
        if request.headers.get("Authorization"):
            raise ApiError(401, "unauthorized", "the admin bearer token is required")
        return web.Response(status=303, headers={"Location": "/ops/login", **NO_STORE})
    snap = await ops_snapshot.snapshot(deps_of(request))
    return web.Response(text=render(snap), content_type="text/html", headers=NO_STORE)


async def login(request: web.Request) -> web.Response:
    """`GET` shows the form (or signs in with `?token=`); `POST` signs in with the form."""
    offered = request.query.get("token")
    if request.method == "POST":
        offered = str((await request.post()).get("token", ""))
    if offered is None:
        return _login_page(200, "")
    secret = _admin_secret(request)
    if secret and hmac.compare_digest(offered.encode(), secret.encode()):
        return _signed_in(secret)
    return _login_page(401, "That is not the admin token.")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/ops", ops)
    router.add_get("/ops/login", login)
    router.add_post("/ops/login", login)


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
    ])


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


def render(s: OpsSnapshot) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gwsync ops</title><style>{CSS}</style></head><body>"
        f"<header><h1>gwsync ops</h1><small>queue {escape(s.queue_name)} · taken "
        f'<span data-metric="taken_at">{escape(s.taken_at)}</span> · refreshes every '
        f"{REFRESH_S} s</small></header>"
        f'<main><div class="cards">{_cards(s)}</div><div class="grid">{_sections(s)}</div>'
        "</main></body></html>")


def _login_page(status: int, message: str) -> web.Response:
    note = f'<p class="none">{escape(message)}</p>' if message else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gwsync ops: '
        f"sign in</title><style>{CSS}</style></head><body><header><h1>gwsync ops</h1>"
        '</header><main><section><h2>Sign in with the admin token</h2>'
        f'{note}<form method="post" action="/ops/login"><input type="password" name="token" '
        'autocomplete="off" size="40" autofocus> <button>Sign in</button></form></section>'
        "</main></body></html>")
    return web.Response(status=status, text=body, content_type="text/html", headers=NO_STORE)
