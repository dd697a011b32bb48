"""Drive the emulator's consent screen as a browser would: parse its form, tick, submit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp


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
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        form = ConsentForm()
        form.feed(await resp.text())
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
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def consent(http: aiohttp.ClientSession, url: str, tick: Iterable[str],
                  user: str | None = None) -> dict[str, str]:
    """Open the consent page at `url`, tick exactly `tick`, and allow."""
    return await submit(http, url, await open_form(http, url), tick, user=user)
