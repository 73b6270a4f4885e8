"""Progress for long work: a live line on a terminal, periodic log lines elsewhere (CI, ``--log-json``)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

log = logging.getLogger("edgeops.progress")


class Progress:
    """Thread-safe counter of done items (and bytes) against a known total.

    On a TTY it redraws one line at most 10 times a second; otherwise it logs a line every ``interval``
    seconds, so CI logs show movement without a flood.
    """

    def __init__(
        self,
        total: int,
        what: str,
        *,
        stream: TextIO | None = None,
        interval: float = 5.0,
        live: bool | None = None,
    ) -> None:
        self.total = total
        self.what = what
        self.done = 0
        self.nbytes = 0
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._interval = interval if not self._live else 0.1
        self._start = time.monotonic()
        # Live lines draw at once; log lines wait one interval, so short work logs only its final line.
        self._last = 0.0 if self._live else self._start
        self._lock = threading.Lock()

    def update(self, n: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.done += n
            self.nbytes += nbytes
            now = time.monotonic()
            if now - self._last >= self._interval or self.done >= self.total:
                self._last = now
                self._emit(final=False)

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        mb = f", {self.nbytes / 1e6:.1f} MB" if self.nbytes else ""
        return f"{self.what}: {self.done}/{self.total} ({pct:.0f}%{mb}, {rate:.0f}/s, {elapsed:.1f}s)"

    def _emit(self, *, final: bool) -> None:
        if self._live:
            width = 24
            filled = int(width * self.done / self.total) if self.total else width
            bar = "#" * filled + "." * (width - filled)
            self._stream.write(f"\r[{bar}] {self._line()}\033[K")
            if final:
                self._stream.write("\n")
            self._stream.flush()
        elif not final:
            log.info(self._line())

    def close(self) -> None:
        with self._lock:
            self._emit(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
