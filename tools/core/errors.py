"""Every error edgeops reports to a user, in one place.

Each carries a message a person can act on: what was wrong, where, and what to do. The CLI prints the
message (no traceback) and exits with the error's ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EdgeopsError",
    "LdoError",
    "ServiceError",
    "StoreError",
]


class EdgeopsError(Exception):
    """Base class: an error with a user-facing message."""

    exit_code = 1


class ConfigError(EdgeopsError):
    """A configuration file is missing, malformed, or has unknown keys / wrong types."""


class LdoError(EdgeopsError):
    """An LDO record does not satisfy the LDO v1 contract.

    ``field`` is the dotted path of the offending field (``sensors.values[2][17]``), or ``"(json)"`` when
    the document is not JSON at all.
    """

    def __init__(self, field: str, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {reason}")


class ServiceError(EdgeopsError):
    """A service (PostgreSQL, S3, git remote, forge) is unreachable or refused the operation."""


class StoreError(EdgeopsError):
    """An object-store URI is malformed or an object is missing/corrupt."""
