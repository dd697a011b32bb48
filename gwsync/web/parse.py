"""The one strict parse path of the web process: query strings, JSON bodies, forms.

Every input goes through here, so bad input is a 4xx and never reaches a database or a
parser that can crash: query strings through `parse_query`, JSON bodies through
`parse_body` (or `read_json` for webhooks), forms through `parse_form` (path parameters
through `gwsync.web.http.check_path`, in the `auth` middleware). Integers are ASCII
digits only and bounded (`str.isdigit()` accepts "²", which `int()` refuses); JSON is
bounded in size and depth (`json.loads` recurses, and ~1,000 levels crash it); text has
no control characters (PostgreSQL refuses NUL) and a length cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar
from urllib.parse import parse_qsl

import pydantic_core
from aiohttp import web
from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from gwsync.domain import features
from gwsync.web.http import CONTROL, HttpError

Body = TypeVar("Body", bound=BaseModel)
Query = TypeVar("Query", bound="QueryModel")
#: The largest JSON body any route reads, and the deepest nesting it accepts.
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
#: Row ids are signed 64-bit integers on both databases: a larger cursor names nothing.
MAX_ROW_ID = 2**63 - 1

_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]{1,20}")
_JSON_SPECIAL = re.compile(rb'["\\\[\]{}]')


def _no_controls(value: str) -> str:
    if CONTROL.search(value):
        raise PydanticCustomError("control_character", "control characters are not allowed")
    return value


def _no_controls_but_lines(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise PydanticCustomError("control_character", "control characters are not allowed")
    return value


def _ascii_int(value: object) -> object:
    """ASCII digits as an int; ints as they are (bounds and strictness follow)."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise PydanticCustomError("ascii_digits", "must be ASCII digits 0-9")
        return int(value)
    return value


def _stripped(value: object) -> object:
    """Spaces around a value are a client's slip; other whitespace is a control character."""
    return value.strip(" ") if isinstance(value, str) else value


#: `Text` in JSON Schema (the validators enforce it): no control character, not blank.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


@dataclass(frozen=True)
class Text(GroupedMetadata):
    """`Annotated[str, Text(n)]`: one line, stripped, 1..n characters, no control characters."""

    max_length: int
    min_length: int = 1

    def __iter__(self) -> Iterator[Any]:
        yield BeforeValidator(_stripped)
        yield Field(min_length=self.min_length, max_length=self.max_length,
                    json_schema_extra={"pattern": ONE_LINE})
        yield AfterValidator(_no_controls)


@dataclass(frozen=True)
class Prose(GroupedMetadata):
    """`Annotated[str, Prose(n)]`: text a person wrote (a justification); it may span
    lines, and is capped in length."""

    max_length: int
    min_length: int = 1

    def __iter__(self) -> Iterator[Any]:
        yield Field(min_length=self.min_length, max_length=self.max_length)
        yield AfterValidator(_no_controls_but_lines)


@dataclass(frozen=True)
class Integer(GroupedMetadata):
    """`Annotated[int, Integer(lo, hi)]`: a JSON integer (not a bool or a float) or a
    string of ASCII digits, within lo..hi."""

    ge: int
    le: int

    def __iter__(self) -> Iterator[Any]:
        yield BeforeValidator(_ascii_int)
        yield Field(ge=self.ge, le=self.le, strict=True, json_schema_extra=_json_bounds)


def _json_bounds(schema: dict[str, Any]) -> None:
    """JSON Schema's names for the bounds (pydantic writes `ge`/`le` after a validator)."""
    for ours, theirs in (("ge", "minimum"), ("le", "maximum")):
        if ours in schema:
            schema[theirs] = schema.pop(ours)


#: A read cursor: a row id this API handed out, so 0..2^63-1.
Cursor = Annotated[int, Integer(0, MAX_ROW_ID)]
#: A credential or code as Google issues them: printable ASCII without spaces.
Token = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
#: Google grants a few dozen scopes at most; each is a short URL or a word like `openid`.
MAX_SCOPES = 64
_Scope = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]


def _few_scopes(value: str) -> str:
    names = value.split()
    if len(names) > MAX_SCOPES or any(len(name) > 256 for name in names):
        raise PydanticCustomError("too_many_scopes", "at most 64 scopes of 256 characters")
    return value


#: Granted scopes as Google writes them: space-separated, or a list; capped in number.
Scopes = (Annotated[str, Field(max_length=MAX_SCOPES * 257, pattern=r"^[\x20-\x7e]*$"),
                    AfterValidator(_few_scopes)]
          | Annotated[list[_Scope], Field(max_length=MAX_SCOPES)])
#: Feature names in a body: a short list of short names (checked against the registry).
FeatureNames = Annotated[list[Annotated[str, Text(40)]], Field(min_length=0, max_length=20)]


class QueryModel(BaseModel):
    """A route's query parameters. Unknown names are ignored (nothing reads them); a
    known name given twice is refused, and an empty value is the same as none.

    `REFUSALS` maps a field to the error code and message its refusal answers with, so
    a route keeps the codes clients know (`invalid_limit`, `bad_cursor`, ...)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    REFUSALS: ClassVar[Mapping[str, tuple[str, str]]] = {}


def _refusal(model: type[BaseModel], exc: ValidationError, default: str,
             default_message: str) -> HttpError:
    """The first failing field's own code (in the model's field order), else the default;
    the response names the fields, never the values (they may be personal data)."""
    fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
    failed = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    refusals: Mapping[str, tuple[str, str]] = getattr(model, "REFUSALS", {})
    for name in model.model_fields:
        if name in failed and name in refusals:
            code, message = refusals[name]
            return HttpError(400, code, message, fields=fields)
    return HttpError(400, default, default_message, fields=fields)


def parse_query(request: web.Request, model: type[Query]) -> Query:
    """The request's query string as `model`, or a 400 naming the bad parameters."""
    data: dict[str, str] = {}
    for name in model.model_fields:
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise HttpError(400, "repeated_parameter", f"give {name} at most once",
                            fields=[name])
        if values and values[0] != "":
            data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(model, exc, "invalid_query", "the query does not match the schema") \
            from None

async def read_body(request: web.Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The whole body (not the first chunk), refused with 413 past `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "body_too_large", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise HttpError(413, "body_too_large", f"the body exceeds {limit} bytes")
    return bytes(body)


def json_depth(raw: bytes) -> int:
    """How deeply `raw` nests arrays and objects, counted without parsing (a parser that
    recurses is what deep nesting crashes). One pass over the quotes, backslashes and
    brackets: linear whatever the input (a regex for strings backtracks on `"\\"\\...`)."""
    depth = deepest = 0
    in_string, escaped_at = False, -1
    for match in _JSON_SPECIAL.finditer(raw):
        at, char = match.start(), raw[match.start()]
        if at == escaped_at:
            continue
        if in_string:
            escaped_at = at + 1 if char == 0x5C else escaped_at  # the next byte is escaped
            in_string = char != 0x22
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in b"]}":
            depth -= 1
    return deepest


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON of bounded depth: no NaN, no lone surrogates, at most MAX_JSON_DEPTH."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if json_depth(data) > MAX_JSON_DEPTH:
        raise HttpError(400, "json_too_deep", f"JSON may nest at most {MAX_JSON_DEPTH} deep")
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError:
        raise HttpError(400, "malformed_json", "the body is not valid JSON") from None


async def read_json(request: web.Request, limit: int = MAX_JSON_BYTES) -> Any:
    """The request's body as strict, bounded JSON (webhooks, which have no model)."""
    return parse_json(await read_body(request, limit))


async def parse_body(request: web.Request, model: type[Body]) -> Body:
    """The request's JSON body as `model` (an empty body is `{}`), or a 400/413."""
    data = parse_json(await read_body(request) or b"{}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(model, exc, "invalid_body", "the body does not match the schema") \
            from None


MAX_FORM_BYTES = 8 * 1024
FORM = "application/x-www-form-urlencoded"


async def parse_form(request: web.Request, model: type[Body],
                     limit: int = MAX_FORM_BYTES) -> Body:
    """A browser form (`application/x-www-form-urlencoded`) as `model`: bounded, UTF-8
    (aiohttp's `request.post()` raises on `%ff`), each field at most once."""
    if request.content_type != FORM:
        raise HttpError(415, "unsupported_media_type", f"send the form as {FORM}")
    try:
        pairs = parse_qsl((await read_body(request, limit)).decode("utf-8"),
                          keep_blank_values=True, errors="strict",
                          max_num_fields=len(model.model_fields) + 1)
    except ValueError:  # UnicodeDecodeError included
        raise HttpError(400, "malformed_form", "the body is not a UTF-8 form") from None
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HttpError(400, "repeated_parameter", "give each field at most once",
                        fields=repeated)
    try:
        return model.model_validate(dict(pairs))
    except ValidationError as exc:
        raise _refusal(model, exc, "invalid_form", "the form does not match the schema") \
            from None


def known_features(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(features.FEATURES))
    if unknown:
        raise HttpError(400, "unknown_feature", "no such feature", features=unknown)
    return names

