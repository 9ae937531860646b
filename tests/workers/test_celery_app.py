"""The Celery app's transport settings hold the crash-safety promises."""

from __future__ import annotations

import pytest

from broker.config.resilience import RetryConfig
from broker.config.settings import Settings
from broker.errors import ConfigError
from workers.celery_app import VISIBILITY_TIMEOUT_S, create_celery_app


def test_tasks_are_acknowledged_late_and_outlive_the_longest_attempt(tmp_path):
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path)
    app = create_celery_app(settings)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_S
    assert settings.config.longest_attempt_s() < VISIBILITY_TIMEOUT_S


def test_a_config_whose_attempts_could_outlive_the_visibility_timeout_is_refused(tmp_path):
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path)
    slow = settings.config.with_providers(
        [p.model_copy(update={"timeout_s": 1800}) for p in settings.config.providers]
    ).model_copy(update={"retries": RetryConfig(tries=3)})
    settings.__dict__["config"] = slow  # the cached property, as if read from a file
    with pytest.raises(ConfigError, match="longer than the 3600 s"):
        create_celery_app(settings)
