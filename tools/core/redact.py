"""One redaction for DSNs, URLs and the error texts that echo them; it holds for malformed input.

A PostgreSQL DSN (``--pg``, ``$EDGEOPS_PG_DSN``) or an S3 endpoint URL can carry a password, and the
libraries that refuse a malformed one echo it back (libpq: ``invalid percent-encoded token: "Pa55%zz"``).
Nothing here parses with a library that could fail: secrets are found by position, the way a person reads
the text, and more is hidden rather than less when the input is ambiguous.

- :func:`dsn_secrets` pulls every string that could be the password out of a DSN or URL, however
  malformed: the URI user info cut at its first ``@`` (as libpq reads it) and at its last (an unencoded
  ``@`` inside a password is the usual mistake), and every ``password=`` value (quoted, unterminated, up
  to a space or an ``&``, with libpq's backslash escapes or without).
- :func:`scrub` hides those literals in any text (also percent-encoded, percent-decoded and
  backslash-escaped), and, with or without them, the value of every ``password=``-like key and the
  password of every ``scheme://user:password@`` in it.
- :func:`redact_dsn` is a DSN fit for a log line or an error message (or no DSN at all when it is neither a
  URL nor ``key=value`` pairs); :func:`redact_url` a URL or store URI with only its secrets hidden.
- :func:`known_secrets` gathers the secrets of the environment (the DSN and S3 endpoint variables, the AWS
  secret key, tokens) for the CLI's last-resort error handler.

Literal secrets shorter than :data:`MIN_LITERAL` characters are hidden only where they stand in a DSN or
URL (hiding every ``ab`` of a message would leave nothing to read); a password that short is no secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

__all__ = ["MIN_LITERAL", "SECRET_ENV", "dsn_secrets", "known_secrets", "redact_dsn", "redact_url", "scrub"]

MASK = "***"
MIN_LITERAL = 3

# Environment variables whose whole value is a secret, and those that hold a DSN or URL that may carry one.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "EDGEOPS_SIGNING_KEY")
_URL_ENV = ("EDGEOPS_PG_DSN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTPS_PROXY", "HTTP_PROXY")

# Every pattern is linear in the text's length, whatever the text (runs of keys, of "a://", of '@'):
# matches start only where a run of name characters starts, quantifiers are bounded or possessive, and a
# longer key or user info than the bounds allow is still hidden as a literal.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,32}://")
# Keys whose value is a secret: libpq's `password`/`sslpassword`, URL query secrets (X-Amz-Signature,
# X-Amz-Credential, X-Amz-Security-Token, access_token, api_key …).
_HIDDEN_KEY = re.compile(
    r"(?i)password|passwd|pwd|secret|token|signature|credential|api[_-]?key|access[_-]?key"
)
_KEY_VALUE = re.compile(
    r"(?<![\w.-])(?P<key>[\w.-]{1,64})(?P<sep>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*+(?:'|\\?$)|\"[^\"]*+(?:\"|$)|(?:[^\s&;,'\"\\]|\\.)*+)",
    re.DOTALL,
)
# libpq's key=value form, values quoted ('…', backslash escapes) or not.
_PAIRS = re.compile(
    r"\s*+(?:[A-Za-z_]\w*+\s*+=\s*+(?:'(?:[^'\\]|\\.)*+'|(?:[^\s'\\]|\\.)*+)\s*+)*+", re.DOTALL
)
# scheme:// and what follows up to a space or a quote; its user info runs to the *last* '@' there: an
# unencoded '@' in a password (postgresql://u:p@ss@host/db) then hides the whole password.
_URL = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,32}://)(?P<rest>[^\s\"'<>]{0,1024}+)"
)


def _secret_pairs(text: str) -> list[re.Match[str]]:
    return [m for m in _KEY_VALUE.finditer(text) if _HIDDEN_KEY.search(m.group("key"))]


def _unescape_libpq(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value, flags=re.DOTALL)


def dsn_secrets(dsn: str) -> list[str]:
    """Every string in ``dsn`` that may be its password, longest first; never fails."""
    found: set[str] = set()
    scheme = _SCHEME.match(dsn.lstrip())
    if scheme:
        rest = dsn.lstrip()[scheme.end() :]
        # libpq ends the user info at the first '@'; a person who wrote '@' into a password meant the last
        # one (before the query, or at all).
        for at in {rest.find("@"), rest.split("?", 1)[0].rfind("@"), rest.rfind("@")} - {-1}:
            _, colon, password = rest[:at].partition(":")
            if colon:
                found.add(password)
    for match in _secret_pairs(dsn):
        value = match.group("value")
        if value.startswith("'"):
            inner = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
            found.update({inner, _unescape_libpq(inner)})
        elif value.startswith('"'):
            found.add(value.strip('"'))
        else:
            found.add(_unescape_libpq(value))
            # Unquoted, libpq ends the value at a space, a URL query at '&': keep both readings.
            token = (dsn[match.end("sep") :].split(None, 1) or [""])[0]
            found.update({value, token, _unescape_libpq(token)})
    variants = set()
    for base in {*found, *(unquote(secret) for secret in found)}:
        variants.update({base, quote(base, safe=""), quote(base, safe="@:")})
    return sorted((s for s in variants if s), key=len, reverse=True)


def _mask_userinfo(match: re.Match[str]) -> str:
    rest = match.group("rest")
    user, colon, _ = rest[: max(rest.rfind("@"), 0)].partition(":")
    if not colon:  # no user info, or a user name alone: nothing secret
        return match.group(0)
    return f"{match.group('scheme')}{user}:{MASK}{rest[rest.rfind('@') :]}"


def _mask_value(match: re.Match[str]) -> str:
    if not _HIDDEN_KEY.search(match.group("key")):
        return match.group(0)
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def scrub(text: str, *secrets: str) -> str:
    """``text`` with each of ``secrets`` (and its encodings) and every positional secret replaced by ***."""
    literals: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        escaped = secret.replace("\\", "\\\\").replace("'", "\\'")
        for variant in (secret, unquote(secret), quote(secret, safe=""), escaped, repr(secret)[1:-1]):
            if len(variant) >= MIN_LITERAL:
                literals.add(variant)
    # Literals first: a positional mask could cut a literal in two (password=ab'cd ends at the quote).
    for literal in sorted(literals, key=len, reverse=True):
        text = text.replace(literal, MASK)
    text = _URL.sub(_mask_userinfo, text)
    return _KEY_VALUE.sub(_mask_value, text)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password hidden (``postgresql://u:***@h/db``, ``host=h password=***``); a DSN that
    is neither a URL nor libpq's ``key=value`` pairs is not shown at all (it may be the password alone)."""
    if not _SCHEME.match(dsn.lstrip()) and not _PAIRS.fullmatch(dsn):
        return "<malformed DSN, not shown>"
    return scrub(dsn, *dsn_secrets(dsn))


def redact_url(url: str) -> str:
    """``url`` (an endpoint, a store URI: something a person needs to see) with only its secrets hidden."""
    return scrub(url, *dsn_secrets(url))


def known_secrets(*dsns: str | None) -> list[str]:
    """The secrets this process could echo: those of ``dsns`` and of the environment's DSNs, URLs, keys."""
    out: list[str] = []
    urls: Iterable[str | None] = (*dsns, *(os.environ.get(name) for name in _URL_ENV))
    for value in urls:
        if value:
            out.extend(dsn_secrets(value))
    out.extend(v for v in (os.environ.get(name) for name in SECRET_ENV) if v)
    return out
