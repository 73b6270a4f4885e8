"""Logging for every edgeops command: human-readable on a terminal, JSON lines with ``--log-json``.

Structured fields travel in ``extra={"fields": {...}}``; the human format appends them as ``key=value``,
the JSON format merges them into the object. Everything goes to stderr, so stdout stays for results that
scripts read (``config check``, ``status --json``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["fields", "setup_logging"]

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Loggers whose INFO lines are the product's own steps; other libraries speak at WARNING and above only.
_OURS = ("edgeops", "tools", "training", "pipelines")


def fields(**kv: Any) -> dict[str, Any]:
    """``log.info("seeded", extra=fields(count=2000))``."""
    return {"fields": kv}


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        extra = getattr(record, "fields", None)
        if extra:
            text += "  " + " ".join(f"{k}={v}" for k, v in extra.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            obj.update({k: v for k, v in extra.items() if k not in obj})
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "fields" and key not in obj:
                obj[key] = value
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def _ours_or_warning(record: logging.LogRecord) -> bool:
    """A person reads the product's steps: third-party INFO/DEBUG lines (onnxscript's optimizer alone
    logged ~500 per `edgeops export`) are dropped unless ``--verbose``."""
    return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] in _OURS


def setup_logging(*, json_lines: bool = False, verbose: bool = False, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _HumanFormatter())
    if not verbose:
        handler.addFilter(_ours_or_warning)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Libraries log request-level detail at INFO/DEBUG; keep them quiet unless asked.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug", "github"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
