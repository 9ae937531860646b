"""Fixtures the store and hand-back tests share: submitting small batches through the real
submission path and reading back their request ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from broker.config.broker_toml import BrokerConfig
from broker.schemas.http import JobCreate
from broker.store import Request
from broker.submission import Submitter

Submit = Callable[..., tuple[str, list[str]]]


@pytest.fixture
def submit_to(db, redis_client) -> Callable[[BrokerConfig], Submit]:
    """``submit_to(config)(n, **job)``: team product submits ``n`` gpt-4o-mini requests
    (``job`` adds job fields); returns the job id and its request ids in batch order."""

    def bind(config: BrokerConfig) -> Submit:
        submitter = Submitter(db, redis_client, config)
        team = config.team("product")

        def _submit(n: int, **job) -> tuple[str, list[str]]:
            body = JobCreate(
                feature="search",
                requests=[
                    {
                        "custom_id": f"r{i}",
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"hello {i}"}],
                    }
                    for i in range(n)
                ],
                **job,
            )
            job_id = submitter.submit(team, body).id
            with db.session() as s:
                ids = s.scalars(
                    select(Request.id).where(Request.job_id == job_id).order_by(Request.seq)
                )
                return job_id, list(ids)

        return _submit

    return bind


@pytest.fixture
def submit(submit_to, settings) -> Submit:
    """``submit(n, **job)`` on the packaged broker.toml."""
    return submit_to(settings.config)
