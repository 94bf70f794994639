# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``filter`` query parameter of list calls, as Compute Engine documents it.

``field = value``, ``field != value``, ``field eq regexp``, ``field ne regexp``,
each in parentheses or not, combined with ``AND`` / ``OR`` (an expression
without either is an AND), ``NOT``; fields are dotted paths such as
``labels.env`` or ``status``.
"""

from __future__ import annotations

import re
import typing as t

from kubeha_lab.sim.errors import invalid

TOKEN = re.compile(r"""\s*(?:(?P<paren>[()])|(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|=|:)|(?P<word>[^\s()=!:]+))""")
Predicate = t.Callable[[t.Mapping[str, t.Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise invalid("Invalid list filter expression '%s'." % text)
        pos = match.end()
        for kind in ("paren", "quoted", "op", "word"):
            if match.group(kind) is not None:
                value = match.group(kind)
                if kind == "quoted":
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                tokens.append((kind, value))
                break
    return tokens


def _lookup(resource: t.Mapping[str, t.Any], field: str) -> t.Any:
    value: t.Any = resource
    for part in field.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _compare(field: str, op: str, expected: str, text: str) -> Predicate:
    if op in ("eq", "ne"):
        try:
            pattern = re.compile(expected)
        except re.error:
            raise invalid("Invalid list filter expression '%s'." % text) from None

        def regex(resource: t.Mapping[str, t.Any]) -> bool:
            value = _lookup(resource, field)
            hit = value is not None and pattern.fullmatch(_text(value)) is not None
            return hit if op == "eq" else not hit
        return regex

    def simple(resource: t.Mapping[str, t.Any]) -> bool:
        value = _lookup(resource, field)
        if op == ":":
            hit = value is not None if expected == "*" else _text(value) == expected
        else:
            hit = value is not None and _text(value) == expected
        return not hit if op == "!=" else hit
    return simple


def _text(value: t.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse(text: str | None) -> Predicate:
    """A predicate for ``text``; an empty filter matches everything."""
    if not text or not text.strip():
        return lambda resource: True
    tokens = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise invalid("Invalid list filter expression '%s'." % text)
        pos += 1
        return tokens[pos - 1]

    def expression() -> Predicate:
        parts: list[tuple[str, Predicate]] = [("AND", term())]
        while peek() is not None and peek() != ("paren", ")"):
            joiner = "AND"
            if peek() in (("word", "AND"), ("word", "OR")):
                joiner = take()[1]
            parts.append((joiner, term()))
        # AND binds tighter than OR.
        groups: list[list[Predicate]] = [[]]
        for joiner, predicate in parts:
            if joiner == "OR":
                groups.append([])
            groups[-1].append(predicate)
        return lambda r: any(all(p(r) for p in group) for group in groups)

    def term() -> Predicate:
        token = take()
        if token == ("word", "NOT"):
            inner = term()
            return lambda r: not inner(r)
        if token == ("paren", "("):
            inner = expression()
            if take() != ("paren", ")"):
                raise invalid("Invalid list filter expression '%s'." % text)
            return inner
        if token[0] != "word":
            raise invalid("Invalid list filter expression '%s'." % text)
        field = token[1]
        op_token = take()
        if op_token[0] == "op" or op_token in (("word", "eq"), ("word", "ne")):
            value = take()
            if value[0] not in ("word", "quoted"):
                raise invalid("Invalid list filter expression '%s'." % text)
            return _compare(field, op_token[1], value[1], text)
        raise invalid("Invalid list filter expression '%s'." % text)

    predicate = expression()
    if pos != len(tokens):
        raise invalid("Invalid list filter expression '%s'." % text)
    return predicate
