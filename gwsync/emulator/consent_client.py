"""A person at the emulator's consent screen: open it, tick boxes, press Continue.

The demo and the tests both need someone to click "Allow" between gwsync's
`/v1/oauth/start` and `/v1/oauth/callback`; this is that someone, driving the page the
way a browser would (parse the HTML form, post it, read the redirect without following
it), so neither needs a browser and both exercise the same page a person would see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp


class ConsentPageError(Exception):
    """The consent screen did not answer as a working one does (an error page, no redirect)."""


@dataclass
class ConsentForm(HTMLParser):
    """The consent page's form: action, hidden fields, and the scope checkboxes."""

    action: str = ""
    hidden: dict[str, str] = field(default_factory=dict)
    #: scope → ticked by default
    boxes: dict[str, bool] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    text_inputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("type") == "checkbox":
            self.boxes[a["value"]] = "checked" in a
        elif tag == "input" and a.get("type") == "text":
            self.text_inputs.append(a["name"])

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.labels.append(data.strip())


async def open_form(http: aiohttp.ClientSession, url: str) -> ConsentForm:
    """Load the consent page at `url` and parse its form; an error page raises."""
    async with http.get(url) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise ConsentPageError(f"the consent page answered {resp.status}: {text[:200]}")
    form = ConsentForm()
    form.feed(text)
    return form


async def submit(http: aiohttp.ClientSession, url: str, form: ConsentForm,
                 tick: Iterable[str], action: str = "allow",
                 user: str | None = None) -> dict[str, str]:
    """Post the form with only `tick` checked; return the redirect's query parameters."""
    data = [*form.hidden.items(), *(("granted", s) for s in tick), ("action", action)]
    if user is not None:
        data = [(k, v) for k, v in data if k != "user"] + [("user", user)]
    async with http.post(urljoin(url, form.action), data=data,
                         allow_redirects=False) as resp:
        if resp.status != 302:
            text = await resp.text()
            raise ConsentPageError(f"the consent form answered {resp.status}: {text[:200]}")
        location = resp.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def consent(http: aiohttp.ClientSession, url: str, tick: Iterable[str],
                  user: str | None = None) -> dict[str, str]:
    """Open the consent page at `url`, tick exactly `tick`, and allow."""
    return await submit(http, url, await open_form(http, url), tick, user=user)
