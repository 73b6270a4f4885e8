"""YAML from untrusted text, in bounded time and memory: no aliases, and caps on size, lines, nodes, depth.

Release files, training configs, ``edgeops.yaml``, overlays and revocation records all arrive through pull
requests, and release files are read again on every node, so each is hostile input until parsed. A YAML
alias (``*name``) repeats a whole subtree by reference: nine anchors of nine aliases each (the "billion
laughs") are a few hundred bytes that every consumer that walks, copies or serialises the result expands to
10⁹ values (minutes of CPU and gigabytes before a MemoryError). None of our files uses one, so
:class:`SafeYAML` refuses them outright, with the line, rather than expanding a bounded number: a PR
reviewer then reads exactly what a node will get. ``<<:`` merge keys need an alias, so they go too
(``<<: {…}`` with the mapping written out stays valid YAML, and harmless).

Before anything is built, :func:`check` walks the parser's event stream once (the same parser the load
uses, so both see the same document) and stops at the first of:

- an alias;
- more than ``max_nodes`` scalars, sequences and mappings (a release file has about 60);
- nesting deeper than ``max_depth`` (the composer and constructors recurse once per level);
- text longer than ``max_chars``, or a line longer than ``max_line``: ruamel's pure-Python round-trip
  scanner builds each comment one character at a time (``comment += ch``), quadratic in the line's
  length, so a single 1 MiB comment line costs it 5-25 s.

:data:`UNTRUSTED` bounds a release file on a node to about a second of CPU (an alias bomb: milliseconds);
:data:`BUILD_OUTPUT` is for what
``kustomize build`` prints (larger, from our own inputs), :data:`UPSTREAM` for upstream CRDs. Every refusal
is a :class:`YAMLLimitError`, a ``YAMLError``, so a read site's ``except YAMLError`` already catches it; the
sites add their file name and say what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

__all__ = [
    "BUILD_OUTPUT",
    "UNTRUSTED",
    "UPSTREAM",
    "Limits",
    "SafeYAML",
    "YAMLLimitError",
    "check",
    "not_utf8",
    "read_text",
]


@dataclass(frozen=True)
class Limits:
    """The most a document may ask of the parser; aliases are never allowed."""

    max_chars: int
    max_line: int
    max_nodes: int
    max_depth: int


# Our own files are at most 5 KiB, 130 values, 170 characters a line and 6 levels deep (edgeops.yaml); each
# cap is 25x or more above that. At these caps the slowest text we found costs the pure-Python parser about
# a second of CPU on a CI runner, check and load together: a node's updater answers within a few seconds.
UNTRUSTED = Limits(max_chars=128 * 1024, max_line=8 * 1024, max_nodes=5_000, max_depth=32)
# `kustomize build` of a ring (tens of KiB today), read with the C loader.
BUILD_OUTPUT = Limits(max_chars=16 << 20, max_line=1 << 20, max_nodes=1_000_000, max_depth=128)
# Upstream CustomResourceDefinitions ($EDGEOPS_CRD_SCHEMAS): MiBs of OpenAPI schema, deeply nested.
UPSTREAM = Limits(max_chars=64 << 20, max_line=1 << 20, max_nodes=10_000_000, max_depth=256)


class YAMLLimitError(YAMLError):
    """The text asks for something :class:`Limits` refuses (an alias, too large, too deep); the message says
    what and where, without the file name (the read site adds it)."""


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _kib(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} characters"


def check(text: str, limits: Limits = UNTRUSTED, *, typ: str = "safe", pure: bool = True) -> None:
    """Raise :class:`YAMLLimitError` unless ``text`` stays within ``limits`` and has no alias.

    Parses ``text`` into events with the parser ``YAML(typ=typ, pure=pure)`` uses, without building
    anything; a syntax error is raised as that parser's own ``YAMLError``, as the load would.
    """
    if len(text) > limits.max_chars:
        raise YAMLLimitError(
            f"the document is {_kib(len(text))}, more than the {_kib(limits.max_chars)} allowed: check it is "
            "the file you meant"
        )
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > limits.max_line:
            raise YAMLLimitError(
                f"line {number} is {_kib(len(line))} long, more than the {_kib(limits.max_line)} allowed; "
                "break it up"
            )
    nodes = depth = 0
    for event in YAML(typ=typ, pure=pure).parse(text):
        if isinstance(event, AliasEvent):
            raise YAMLLimitError(
                f"YAML aliases (*{event.anchor}) are not allowed{_where(event)}: write the value out in "
                "full (anchors, aliases and `<<:` merge keys are refused in files that come through pull "
                "requests)"
            )
        if isinstance(event, MappingStartEvent | SequenceStartEvent):
            depth += 1
            if depth > limits.max_depth:
                raise YAMLLimitError(
                    f"the document nests deeper than {limits.max_depth} levels{_where(event)}; flatten it"
                )
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            depth -= 1
        if isinstance(event, ScalarEvent | MappingStartEvent | SequenceStartEvent):
            nodes += 1
            if nodes > limits.max_nodes:
                raise YAMLLimitError(
                    f"the document has more than {limits.max_nodes} values{_where(event)}: check it is the "
                    "file you meant"
                )


class SafeYAML(YAML):
    """``ruamel.yaml.YAML`` whose ``load``/``load_all`` first :func:`check` the text against ``limits``.

    A drop-in for ``YAML(typ=…)`` at every site that reads text from a pull request or a node's mount:
    ``typ="safe"`` for plain values, ``typ="rt"`` (the default, as ruamel's) where comments and key order
    must survive an edit. Takes text (``str``), not streams or paths: the caps need the whole text.
    Values the constructors cannot build (a date such as ``2026-02-30``) come back as a ``YAMLError`` too,
    never as a ``ValueError`` from deep inside the library.
    """

    def __init__(self, *, typ: str = "rt", pure: bool = False, limits: Limits = UNTRUSTED) -> None:
        super().__init__(typ=typ, pure=pure)
        self.limits = limits
        self._check_typ, self._check_pure = typ, pure

    def _checked(self, stream: Any) -> str:
        if not isinstance(stream, str):
            raise TypeError(f"SafeYAML reads text (str), not {type(stream).__name__}")
        check(stream, self.limits, typ=self._check_typ, pure=self._check_pure)
        return stream

    def load(self, stream: Any) -> Any:
        text = self._checked(stream)
        try:
            return super().load(text)
        except (ValueError, TypeError, OverflowError) as exc:  # a constructor refusing a scalar
            raise YAMLLimitError(f"a value cannot be read: {exc}") from None

    def load_all(self, stream: Any) -> Any:
        """Every document of ``stream``, as a list (the caps apply to the stream as a whole)."""
        text = self._checked(stream)
        try:
            return list(super().load_all(text))
        except (ValueError, TypeError, OverflowError) as exc:
            raise YAMLLimitError(f"a value cannot be read: {exc}") from None


def read_text(path: str | os.PathLike[str], limits: Limits = UNTRUSTED) -> str:
    """The UTF-8 text of the file at ``path``, read no further than the cap allows.

    ``OSError`` and ``UnicodeDecodeError`` (see :func:`not_utf8`) propagate for the caller to word; a file
    larger than ``limits.max_chars`` bytes is a :class:`YAMLLimitError` before it is read into memory.
    """
    with open(path, "rb") as handle:
        data = handle.read(limits.max_chars + 1)
    if len(data) > limits.max_chars:
        raise YAMLLimitError(
            f"the file is larger than the {_kib(limits.max_chars)} allowed: check it is the file you meant"
        )
    return data.decode("utf-8")


def not_utf8(exc: UnicodeDecodeError) -> str:
    """``not UTF-8 text (byte 0xff at offset 12)``: where the decoding stopped, never the text itself."""
    bad = exc.object[exc.start : exc.start + 1]
    byte = f"byte 0x{bad[0]:02x}" if isinstance(bad, bytes) and bad else "a byte"
    return f"not UTF-8 text ({byte} at offset {exc.start}); save the file as UTF-8"
