"""Google's partial responses: the ``fields`` query parameter, parsed, checked and applied.

The syntax is the documented one (https://developers.google.com/drive/api/guides/
fields-parameter): a comma-separated list of paths, ``a/b`` selects a sub-field, ``a(b,c)``
selects several sub-fields of ``a``, and ``*`` selects everything at its level. Each name is
checked against the method's response schema in the bundled discovery document, so a mask
the real API rejects is rejected here too (Google's exact message is not documented).
"""

from __future__ import annotations

from typing import Any

#: A parsed mask: field name → sub-mask, or ``None`` for the whole field.
Mask = dict[str, "Mask | None"]


class InvalidMask(ValueError):
    """The ``fields`` value does not parse, or names a field the schema does not have."""


def _merge(into: Mask, name: str, sub: Mask | None) -> None:
    if name in into and (into[name] is None or sub is None):
        into[name] = None
        return
    if name in into:
        for key, value in sub.items():  # type: ignore[union-attr]
            _merge(into[name], key, value)  # type: ignore[arg-type]
        return
    into[name] = sub


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.replace(" ", "")
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _name(self) -> str:
        start = self.pos
        while self._peek() and self._peek() not in ",()/":
            self.pos += 1
        if start == self.pos:
            raise InvalidMask(f"Invalid field selection {self.text}")
        return self.text[start:self.pos]

    def _item(self, into: Mask) -> None:
        path = [self._name()]
        while self._peek() == "/":
            self.pos += 1
            path.append(self._name())
        sub: Mask | None = None
        if self._peek() == "(":
            self.pos += 1
            sub = self.items(closing=")")
        for name in reversed(path[1:]):
            sub = {name: sub}
        _merge(into, path[0], sub)

    def items(self, closing: str = "") -> Mask:
        mask: Mask = {}
        while True:
            self._item(mask)
            if self._peek() == ",":
                self.pos += 1
                continue
            if self._peek() != closing:
                raise InvalidMask(f"Invalid field selection {self.text}")
            self.pos += 1 if closing else 0
            return mask


def parse(text: str) -> Mask:
    """Parse a ``fields`` value; raises :class:`InvalidMask`."""
    return _Parser(text).items()


def _ref(prop: dict[str, Any]) -> str | None:
    """The schema a property holds (directly, as array items, or as map values)."""
    for holder in (prop, prop.get("items") or {}, prop.get("additionalProperties") or {}):
        if "$ref" in holder:
            return str(holder["$ref"])
    return None


def check(mask: Mask, schema: str, schemas: dict[str, Any]) -> None:
    """Every name in ``mask`` exists in ``schema``; raises :class:`InvalidMask` naming the first."""
    properties = schemas[schema].get("properties", {})
    for name, sub in mask.items():
        if name == "*":
            continue
        if name not in properties:
            raise InvalidMask(f"Invalid field selection {name}")
        if sub is None:
            continue
        ref = _ref(properties[name])
        if ref is None:  # a scalar or a free-form object: Google's answer unknown, refuse
            raise InvalidMask(f"Invalid field selection {name}")
        check(sub, ref, schemas)


def apply(value: Any, mask: Mask | None) -> Any:
    """``value`` reduced to ``mask`` (lists are reduced item by item)."""
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [apply(item, mask) for item in value]
    if not isinstance(value, dict):
        return value
    return {name: apply(value[name], sub) for name, sub in mask.items() if name in value}
