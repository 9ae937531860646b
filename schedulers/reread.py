"""Operator settings the scheduler, workers and API reread from the database now and then.

Weights, budget limits and pauses live in the database (the record), change rarely and are
read on hot paths, so each process keeps the last value and rereads it at most every
``refresh_s`` seconds. If the database cannot be read, the last value stays in force.
"""

from __future__ import annotations

import logging
import time
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reread(Generic[T]):
    """Callable: the current value; subclasses say how to :meth:`load` it."""

    what = "settings"  # for the warning when a reread fails

    def __init__(self, initial: T, refresh_s: float) -> None:
        self._value = initial
        self._refresh_s = refresh_s
        self._read_at = float("-inf")

    def load(self) -> T:
        raise NotImplementedError

    def __call__(self) -> T:
        now = time.monotonic()
        if now - self._read_at >= self._refresh_s:
            self._read_at = now
            try:
                self._value = self.load()
            except SQLAlchemyError as exc:
                log.warning("could not read %s, keeping the last ones: %s", self.what, exc)
        return self._value
