"""The emulator reads a batch body by string work only where the email package would read
it the same; anything else is left to the email package."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from gwsync.emulator import batch
from gwsync.emulator.batch import parse_batch, split_plain

BOUNDARY = "===============0316459529693160994=="
CONTENT_TYPE = f'multipart/mixed; boundary="{BOUNDARY}"'

_text = st.text(st.sampled_from("ab :\t\r\n"), max_size=20) | st.text(
    st.characters(codec="ascii", exclude_characters="-"), max_size=40)
_line_end = st.sampled_from(["\n", "\r\n"])
_header = st.tuples(st.sampled_from(["Content-Type", "Content-ID", "MIME-Version", "X-a",
                                     "content-transfer-encoding"]),
                    st.sampled_from(["application/http", "<id + 1>", "1.0", " b\t",
                                     "binary", "8bit", "Application/HTTP; x=1", "a\nb",
                                     "a\rb", "a\r\nb", "a\r", " b\n c"]))


def _body(parts: list[tuple[list[tuple[str, str]], str]], end: str) -> str:
    out = ""
    for headers, payload in parts:
        head = end.join(f"{name}: {value}" for name, value in headers)
        out += f"--{BOUNDARY}{end}{head}{end}{end}{payload}{end}"
    return out + f"--{BOUNDARY}--{end}"


def _by_email_package(text: str) -> list[tuple[dict[str, str], str]]:
    return batch._split_by_email_package(CONTENT_TYPE, text)  # noqa: SLF001 — the oracle


def _compare(text: str) -> None:
    plain = split_plain(CONTENT_TYPE, text)
    if plain is not None:
        oracle = _by_email_package(text)
        assert [(h.get("content-id"), p) for h, p in plain] == \
            [(h.get("content-id"), p) for h, p in oracle]
        assert [batch._content_type(h.get("content-type", "text/plain"))  # noqa: SLF001
                for h, _ in plain] == [h["content-type"] for h, _ in oracle]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.lists(_header, min_size=1, max_size=4), _text), min_size=1,
                max_size=4), _line_end)
def test_a_body_read_by_string_work_reads_as_the_email_package_reads_it(
    parts: list[tuple[list[tuple[str, str]], str]], end: str,
) -> None:
    """Whatever parts, headers, payloads and line ends, the string reading and the email
    package agree on every part's Content-ID, content type and payload."""
    _compare(_body(parts, end))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab:- \r\n=") + [f"--{BOUNDARY}", "Content-ID: x",
                                                      "Content-Type: application/http"]),
                max_size=80).map("".join))
def test_any_text_is_either_left_to_the_email_package_or_read_alike(text: str) -> None:
    """Arbitrary text around the boundary never reads differently by string work."""
    _compare(text)


def test_what_the_google_client_sends_is_read_by_string_work() -> None:
    """The Google client's batch (LF lines, binary parts) takes the string path."""
    text = _body([([("Content-Type", "application/http"), ("MIME-Version", "1.0"),
                    ("Content-Transfer-Encoding", "binary"), ("Content-ID", "<a + 1>")],
                   "GET /gmail/v1/users/me/messages/1 HTTP/1.1\naccept: application/json\n\n")],
                 "\n")
    split = split_plain(CONTENT_TYPE, text)
    assert split is not None and split[0][0]["content-id"] == "<a + 1>"


def test_a_base64_part_is_left_to_the_email_package_and_decoded() -> None:
    """A part in a transfer encoding is not read by string work, and still parses."""
    inner = base64.b64encode(b"GET /gmail/v1/users/me/profile HTTP/1.1\r\n\r\n").decode()
    text = _body([([("Content-Type", "application/http"),
                    ("Content-Transfer-Encoding", "base64")], inner)], "\r\n")
    assert split_plain(CONTENT_TYPE, text) is None
    [part] = parse_batch(CONTENT_TYPE, text.encode())
    assert (part.method, part.target) == ("GET", "/gmail/v1/users/me/profile")
