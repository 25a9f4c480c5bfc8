"""One log line when a dependency goes down and one when it comes back.

Whatever notices an outage (the health monitor, a background worker, a client of another
service) reports it here on every failure and success; only the transitions are logged, so an
outage of any length costs two lines, not a traceback per request or per tick. The records carry
`outage` ("down"/"up"), `component` (who noticed) and `dependency` as structured fields.
"""

from __future__ import annotations

import logging
import time


class OutageLog:
    """The up/down state of one dependency, as seen by one component of one service."""

    def __init__(self, logger: logging.Logger, *, component: str, dependency: str) -> None:
        self._log = logger
        self.component = component
        self.dependency = dependency
        self._down_since: float | None = None

    def _fields(self, event: str) -> dict[str, str]:
        return {"outage": event, "component": self.component, "dependency": self.dependency}

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def down(self, cause: BaseException | str) -> bool:
        """Record a failure; logs (and returns True) only if the dependency was up until now."""
        if self._down_since is not None:
            return False
        self._down_since = time.monotonic()
        detail = cause if isinstance(cause, str) else type(cause).__name__
        self._log.warning(
            "%s: %s is unavailable (%s)",
            self.component,
            self.dependency,
            detail,
            extra={
                "outage": "down",
                "component": self.component,
                "dependency": self.dependency,
                "cause": detail,
            },
        )
        return True

    def up(self) -> bool:
        """Record a success; logs (and returns True) only if the dependency was down."""
        if self._down_since is None:
            return False
        seconds = round(time.monotonic() - self._down_since, 2)
        self._down_since = None
        self._log.info(
            "%s: %s is available again after %.2f s",
            self.component,
            self.dependency,
            seconds,
            extra={
                "outage": "up",
                "component": self.component,
                "dependency": self.dependency,
                "down_s": seconds,
            },
        )
        return True
