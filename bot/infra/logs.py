"""Log lines that cannot flood: repeats counted and summarised, outages told twice.

A forged request a second, or a Redis outage met by a loop ten times a second, must
not bury the log (or the log bill). Two helpers:

- ``Repeats``: the first line of a kind is logged; the same kind again within
  ``window`` seconds is counted, and the count is logged once the window has passed
  (``… 312 more like this in the last 60 s``).
- ``Outage``: a dependency that fails is logged when the failure starts (with what
  was raised) and when it ends (with how long it lasted), not at every attempt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from bot.infra import metrics

# What the work under way concerns (a run, a bulk run, a schedule): JSON log lines
# carry it, so that an operator can ask for every line about one run.
concerning: ContextVar[Mapping[str, str]] = ContextVar("concerning", default=MappingProxyType({}))


@contextlib.contextmanager
def about(**ids: str) -> Iterator[None]:
    """Log lines within say what they concern (``run="FN…"``, ``bulk_run="…"``)."""
    token = concerning.set({**concerning.get(), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        concerning.reset(token)


class Repeats:
    """Log a kind of line at most once per ``window`` seconds, then how many were held."""

    def __init__(
        self,
        logger: logging.Logger,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._since: dict[str, float] = {}  # kind -> when its window opened
        self._held: dict[str, int] = {}  # kind -> lines held back in that window

    def log(
        self, level: int, kind: str, message: str, *args: object, exc_info: bool = False
    ) -> None:
        """``message % args`` at ``level``, unless a line of ``kind`` was logged within
        the window; then it is only counted."""
        now = self.clock()
        opened = self._since.get(kind)
        if opened is not None and now - opened < self.window:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        held = self._held.pop(kind, 0)
        if held:
            self.logger.log(
                level, "… %d more like this in the last %.0f s: %s", held, self.window, kind
            )
        self._since[kind] = now
        self.logger.log(level, message, *args, exc_info=exc_info)

    def warning(self, kind: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, kind, message, *args)


class Outage:
    """One dependency's state, logged when it goes down and when it comes back."""

    def __init__(
        self, logger: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.what = what
        self.clock = clock
        self.since: float | None = None  # when the current outage began
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        """An attempt failed: logged (with the cause, never a traceback) if it is the first."""
        self.failures += 1
        if self.since is None:
            metrics.STORE_OUTAGES.labels(self.what).inc()
            self.since = self.clock()
            self.logger.error("%s unavailable (%s): retrying quietly", self.what, _cause(exc))

    def ok(self) -> None:
        """An attempt worked: logged if it ends an outage."""
        if self.since is not None:
            lasted = self.clock() - self.since
            self.logger.warning(
                "%s is back after %.0f s (%d failed attempts)", self.what, lasted, self.failures
            )
        self.since = None
        self.failures = 0


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return type(cause).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
