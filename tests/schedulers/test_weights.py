"""Team weights: broker.toml, overridden at run time through the admin API (real database)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from broker.api import create_app
from broker.store import TeamSetting, team_settings
from schedulers.weights import TeamWeights, read_overrides

ADMIN = {"Authorization": "Bearer ib-dev-admin"}
CONFIG_WEIGHTS = {"product": 1.0, "content": 1.0, "platform": 2.0}


@pytest.fixture
def clean(db):
    """Overrides live in the session's shared database: every test starts and ends without."""
    db.write(lambda s: s.execute(delete(TeamSetting)))
    yield
    db.write(lambda s: s.execute(delete(TeamSetting)))


def test_config_weights_then_an_override_set_through_the_api(settings, db, redis_client, clean):
    weights = TeamWeights(db, settings.config, refresh_s=0)
    assert weights() == CONFIG_WEIGHTS

    with TestClient(create_app(settings)) as api:
        resp = api.put("/v1/admin/teams/platform/weight", json={"weight": 5}, headers=ADMIN)
        assert resp.status_code == 200, resp.text
        assert weights() == {**CONFIG_WEIGHTS, "platform": 5.0}

        assert api.delete("/v1/admin/teams/platform/weight", headers=ADMIN).status_code == 200
        assert weights() == CONFIG_WEIGHTS


def test_an_override_written_to_the_database_waits_for_the_refresh(settings, db, clean):
    fresh = TeamWeights(db, settings.config, refresh_s=0)
    cached = TeamWeights(db, settings.config, refresh_s=3600)
    assert cached() == CONFIG_WEIGHTS

    db.write(lambda s: team_settings.set_weight(s, "content", 0.5))
    assert read_overrides(db) == {"content": 0.5}
    assert fresh()["content"] == 0.5
    assert cached()["content"] == 1.0, "read once an hour: still the weight it read at start"

    db.write(lambda s: team_settings.set_weight(s, "content", None))
    assert read_overrides(db) == {}, "a reset leaves no override behind"
    assert fresh() == CONFIG_WEIGHTS


def test_a_concurrent_first_write_of_the_same_row_is_retried_as_an_update(settings, db, clean):
    """Two operators create the same team's row at once: the loser updates instead of failing."""
    attempts = []

    def racing(session: Session) -> None:
        attempts.append(1)
        real_get = session.get

        def get_then_lose_the_race(*args, **kwargs):
            row = real_get(*args, **kwargs)
            if len(attempts) == 1:  # the other writer inserts between our read and our insert
                db.write(lambda other: other.add(TeamSetting(team_id="product", weight=7)))
            return row

        session.get = get_then_lose_the_race
        team_settings.set_weight(session, "product", 3)

    db.write(racing)
    assert len(attempts) == 2, "the first attempt lost the race and was retried"
    assert read_overrides(db) == {"product": 3.0}
