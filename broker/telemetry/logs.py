"""Logging for every process: text or JSON lines, ids from the context, secrets masked.

``configure_logging(settings, process)`` is called once at start by each process command
(``inference-broker api|scheduler|worker|webhooks|flower``). It installs one handler on the root
logger, writing to stderr:

- ``BROKER_LOG_FORMAT=text`` (the default): ``<asctime> <level> <logger> <message>``;
- ``BROKER_LOG_FORMAT=json``: one object per line, ``ts`` (ISO 8601, UTC), ``level``,
  ``logger``, ``message``, ``process`` (the command), then whatever context is known:
  ``request_id``, ``job_id``, ``team``, ``provider``, ``model``, ``attempt``, ``delivery_id``
  (from :func:`bind` or a call's ``extra=``), and ``exc_info`` for a traceback.

Context is a :mod:`contextvars` mapping: ``with bind(request_id=..., attempt=...):`` around a
unit of work, and every record logged inside it, by our code or a library's, carries those
fields (each Celery pool thread has its own context).

Filters on the handler, in this order, see every record any logger sends through it:
:class:`ContextFilter`; :class:`SecretsFilter`, always on, which masks the values of the
providers' API keys (the variables ``providers[].api_key_env`` names) and the webhook secrets
(``BROKER_WEBHOOK_SECRET``, each team's derived secret and its ``webhook_secret_env`` value) as
``***`` in the message, its arguments, the traceback and extra fields; and, with
``BROKER_REDACT=true``, :class:`RedactionFilter` (:mod:`broker.telemetry.redaction`).

uvicorn (``log_config=None``) and Celery's worker (a ``setup_logging`` receiver in
:mod:`workers.celery_app`) leave the logging set up here alone, so their lines come out through
the same handler and format.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from broker.config.broker_toml import BrokerConfig
from broker.config.settings import Settings
from broker.telemetry import redaction
from broker.webhooks.signing import derive_team_secret

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONTEXT_FIELDS = ("request_id", "job_id", "team", "provider", "model", "attempt", "delivery_id")
MASK = "***"
#: Values shorter than this are not masked: a one-letter "key" would mask every such letter.
MIN_SECRET_CHARS = 6

_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "broker_log_context", default=MappingProxyType({})
)

#: LogRecord attributes that are not extra fields (the standard ones and a few libraries add).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NOT_FIELDS = _STANDARD | {"color_message"}  # uvicorn's ANSI copy of the message


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (None values are skipped) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound fields onto each record; a call's own ``extra=`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _RewriteFilter(logging.Filter, ABC):
    """Rewrite the text of a record: its message (with its arguments merged in), the traceback
    and stack text, and string values of extra fields. Subclasses say how (``rewrite``)."""

    @abstractmethod
    def rewrite(self, text: str) -> str: ...

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format: log what there is, never raise here
            message = f"{record.msg} {record.args!r}"
        record.msg = self.rewrite(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # formatters would format it again, unmasked
        if record.exc_text:
            record.exc_text = self.rewrite(record.exc_text)
        if record.stack_info:
            record.stack_info = self.rewrite(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                setattr(record, key, self._rewrite_value(value))
        return True

    def _rewrite_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.rewrite(value)
        if isinstance(value, Mapping):
            return {k: self._rewrite_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._rewrite_value(v) for v in value]
        return value


class SecretsFilter(_RewriteFilter):
    """Mask each of ``secrets`` (values shorter than :data:`MIN_SECRET_CHARS` are ignored)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len)
        # Longest first, so a secret that contains another is masked whole.
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in reversed(values))) if values else None
        )

    def rewrite(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def filter(self, record: logging.LogRecord) -> bool:
        return super().filter(record) if self._pattern else True


class RedactionFilter(_RewriteFilter):
    """Replace e-mail addresses, phone and card numbers (:func:`broker.telemetry.redaction.redact`)."""

    def rewrite(self, text: str) -> str:
        return redaction.redact(text)


class _JsonFormatter(JsonFormatter):
    def __init__(self, process: str) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"process": process},
            reserved_attrs=sorted(_NOT_FIELDS),
            timestamp="ts",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"ts": log_data.pop("ts"), **log_data}


def secret_values(
    config: BrokerConfig, webhook_secret: str, environ: Mapping[str, str] = os.environ
) -> list[str]:
    """Every value that must never reach a log: the providers' API keys and the teams' webhook
    secrets (from the variables ``config`` names, read from ``environ`` now), the webhook
    secret base and each team's secret derived from it."""
    base = webhook_secret
    names = [p.api_key_env for p in config.providers] + [t.webhook_secret_env for t in config.teams]
    values = [environ.get(name) for name in names if name]
    values += [base] + [derive_team_secret(base, t.id) for t in config.teams]
    return [v for v in values if v]


def make_handler(
    settings: Settings,
    process: str,
    stream: IO[str] | None = None,
    *,
    secrets: Iterable[str] | None = None,
) -> logging.Handler:
    """The handler :func:`configure_logging` installs (``secrets`` defaults to
    :func:`secret_values`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    filters: list[logging.Filter] = [
        ContextFilter(),
        SecretsFilter(
            secret_values(settings.config, settings.webhook_secret.get_secret_value())
            if secrets is None
            else secrets
        ),
    ]
    if settings.redact:
        filters.append(RedactionFilter())
    for f in filters:
        handler.addFilter(f)
    formatter: logging.Formatter = (
        _JsonFormatter(process) if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    return handler


def configure_logging(
    settings: Settings, process: str, stream: IO[str] | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with :func:`make_handler`'s, at ``log_level``."""
    handler = make_handler(settings, process, stream)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # warnings.warn() as records of logger py.warnings
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per provider call is noise
    return handler
