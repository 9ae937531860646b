"""Log lines: text as before, JSON with the bound ids, secrets masked, redaction on request."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from broker.config.broker_toml import load_config
from broker.config.settings import DEV_WEBHOOK_SECRET, Settings
from broker.telemetry import logs
from broker.webhooks.signing import derive_team_secret

API_KEY = "sk-live-0123456789abcdef"
TEAM_SECRET = "whsec-team-content-42"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put back the root logger's handlers and level after a test that configures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def capture(
    process: str = "worker", secrets: tuple[str, ...] = (), **settings
) -> tuple[logging.Logger, io.StringIO]:
    """A logger of its own writing through :func:`broker.telemetry.logs.make_handler` into a buffer."""
    out = io.StringIO()
    handler = logs.make_handler(Settings(**settings), process, out, secrets=secrets)
    logger = logging.getLogger(f"test.logs.{process}.{id(out)}")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_bound_ids():
    log, out = capture(log_format="json")
    with logs.bind(request_id="req_a_0", attempt=2, provider="sim-openai", model="gpt-4o-mini"):
        with logs.bind(job_id="job_a", team="product"):
            log.info("finished %s in %d ms", "req_a_0", 12)
        log.warning("after the job block")
    log.info("outside")

    first, second, third = lines(out)
    assert first["message"] == "finished req_a_0 in 12 ms"
    assert first["level"] == "INFO" and first["logger"] == log.name
    assert first["process"] == "worker"
    ts = datetime.fromisoformat(first["ts"])
    assert ts.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60
    assert next(iter(first)) == "ts"
    assert {k: first[k] for k in logs.CONTEXT_FIELDS if k != "delivery_id"} == {
        "request_id": "req_a_0",
        "job_id": "job_a",
        "team": "product",
        "provider": "sim-openai",
        "model": "gpt-4o-mini",
        "attempt": 2,
    }
    assert second["level"] == "WARNING" and second["request_id"] == "req_a_0"
    assert "job_id" not in second and "team" not in second, "the inner block ended"
    assert not set(logs.CONTEXT_FIELDS) & set(third), "nothing bound outside"


def test_extra_fields_win_over_bound_ones_and_none_is_not_bound():
    log, out = capture(log_format="json")
    with logs.bind(delivery_id="whd_1", job_id=None):
        log.info("sent", extra={"delivery_id": "whd_2", "job_id": "job_b"})
    (line,) = lines(out)
    assert line["delivery_id"] == "whd_2" and line["job_id"] == "job_b"


def test_json_tracebacks_and_odd_values_still_make_one_parseable_line():
    log, out = capture(log_format="json")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("failed on %r", {"a": object()})
    (line,) = lines(out)
    assert line["level"] == "ERROR" and "ValueError: bad" in line["exc_info"]
    assert out.getvalue().count("\n") == 1


def test_bound_ids_cross_threads_only_when_bound_there():
    import threading

    log, out = capture(log_format="json")
    with logs.bind(request_id="req_main"):
        thread = threading.Thread(target=lambda: log.info("in a pool thread"))
        thread.start()
        thread.join()
    (line,) = lines(out)
    assert "request_id" not in line, "a new thread starts with an empty context"


def test_text_format_is_unchanged():
    log, out = capture(log_format="text")
    with logs.bind(request_id="req_a_0"):
        log.info("hello %s", "world")
    text = out.getvalue()
    pattern = rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO {re.escape(log.name)} hello world\n"
    assert re.fullmatch(pattern, text), text


def test_secrets_are_masked_in_message_args_traceback_and_extra():
    log, out = capture(log_format="json", secrets=(API_KEY, TEAM_SECRET, "short"))
    log.info(f"header Bearer {API_KEY}")
    log.warning("calling with %s and %r", API_KEY, {"secret": TEAM_SECRET})
    try:
        raise RuntimeError(f"auth failed for {API_KEY}")
    except RuntimeError:
        log.exception("provider error")
    log.info("extra", extra={"data": {"headers": [f"x-api-key: {API_KEY}"]}})
    log.info("a short value is not a secret: short")

    text = out.getvalue()
    assert API_KEY not in text and TEAM_SECRET not in text
    got = lines(out)
    assert got[0]["message"] == "header Bearer ***"
    assert got[1]["message"] == "calling with *** and {'secret': '***'}"
    assert "RuntimeError: auth failed for ***" in got[2]["exc_info"]
    assert got[3]["data"] == {"headers": ["x-api-key: ***"]}
    assert got[4]["message"].endswith("short")


def test_a_bad_format_string_is_logged_masked_not_raised():
    log, out = capture(log_format="json", secrets=(API_KEY,))
    log.info("%d calls with key %s", "many", API_KEY)
    (line,) = lines(out)
    assert API_KEY not in line["message"] and "***" in line["message"]


def test_secrets_are_masked_in_text_lines_and_tracebacks():
    log, out = capture(log_format="text", secrets=(API_KEY,))
    try:
        raise RuntimeError(API_KEY)
    except RuntimeError:
        log.exception("key %s", API_KEY)
    text = out.getvalue()
    assert API_KEY not in text
    assert "key ***" in text and "RuntimeError: ***" in text


def test_secret_values_are_the_provider_keys_and_webhook_secrets():
    base = load_config()
    providers = [
        p.model_copy(update={"api_key_env": "TEST_OPENAI_KEY"}) if i == 0 else p
        for i, p in enumerate(base.providers)
    ]
    teams = [
        t.model_copy(update={"webhook_secret_env": "TEST_CONTENT_SECRET"})
        if t.id == "content"
        else t
        for t in base.teams
    ]
    config = base.model_copy(update={"providers": providers, "teams": teams})
    environ = {"TEST_OPENAI_KEY": API_KEY, "TEST_CONTENT_SECRET": TEAM_SECRET}

    values = logs.secret_values(config, "base-secret-value", environ)

    assert API_KEY in values and TEAM_SECRET in values and "base-secret-value" in values
    assert derive_team_secret("base-secret-value", "product") in values
    assert logs.secret_values(config, "base-secret-value", {}).count(API_KEY) == 0


def test_the_handler_masks_secrets_from_the_settings_by_default():
    """Without ``secrets=``, the handler reads them from the settings and the environment."""
    out = io.StringIO()
    handler = logs.make_handler(Settings(), "api", out)
    record = logging.makeLogRecord(
        {"msg": "signing with %s", "args": (DEV_WEBHOOK_SECRET,), "levelno": 20}
    )
    handler.handle(record)
    assert out.getvalue().rstrip().endswith("signing with ***")


@pytest.mark.parametrize("redact_on", [True, False])
def test_redaction_filter_on_and_off(redact_on):
    log, out = capture(log_format="json", redact=redact_on)
    log.info("prompt: %s", "mail jane@example.com or +44 20 7946 0958, card 4111 1111 1111 1111")
    (line,) = lines(out)
    if redact_on:
        assert line["message"] == "prompt: mail [email] or [phone], card [card]"
    else:
        assert "jane@example.com" in line["message"] and "4111 1111 1111 1111" in line["message"]


def test_configure_logging_replaces_the_root_handlers(root_logging):
    out = io.StringIO()
    settings = Settings(log_format="json", log_level="warning")
    logs.configure_logging(settings, "scheduler", out)
    logs.configure_logging(settings, "scheduler", out)  # twice: still one handler
    root = logging.getLogger()
    assert len(root.handlers) == 1 and root.level == logging.WARNING
    logging.getLogger("schedulers.loop").warning("round took %d ms", 900)
    logging.getLogger("schedulers.loop").info("not at warning")
    (line,) = lines(out)
    assert line["process"] == "scheduler" and line["logger"] == "schedulers.loop"


def test_celery_worker_leaves_our_logging_alone(root_logging, monkeypatch):
    """``worker_main --loglevel`` runs Celery's logging setup: with our ``setup_logging``
    receiver it adds no handler (not even on ``celery.task``) and keeps ours."""
    from workers.celery_app import create_celery_app

    for name in ("_MP_FORK_LOGLEVEL_", "_MP_FORK_LOGFILE_", "_MP_FORK_LOGFORMAT_"):
        monkeypatch.setenv(name, "")  # Celery's setup writes these; put them back after
    out = io.StringIO()
    settings = Settings(log_format="json")
    handler = logs.configure_logging(settings, "worker", out)
    app = create_celery_app(settings)
    was_setup = app.log.already_setup  # a class attribute: once per process
    app.log.already_setup = False
    try:
        app.log.setup(loglevel="DEBUG", redirect_stdouts=True)
    finally:
        app.log.already_setup = was_setup

    assert logging.getLogger().handlers == [handler]
    assert logging.getLogger().level == logging.INFO
    task_logger = logging.getLogger("celery.task")  # get_task_logger()'s parent
    assert all(isinstance(h, logging.NullHandler) for h in task_logger.handlers)
    assert task_logger.propagate
    logging.getLogger("celery.worker.strategy").info("Task %s received", "workers.execute")
    (line,) = lines(out)
    assert line["logger"] == "celery.worker.strategy" and line["process"] == "worker"


def test_uvicorn_logs_through_our_handler(root_logging):
    import uvicorn

    out = io.StringIO()
    logs.configure_logging(Settings(log_format="json"), "api", out)
    uvicorn.Config(app=None, log_config=None, log_level="warning").configure_logging()
    logging.getLogger("uvicorn.error").info("Started server process")  # below warning
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    (line,) = lines(out)
    assert line["logger"] == "uvicorn.error" and line["process"] == "api"
    assert "color_message" not in line
