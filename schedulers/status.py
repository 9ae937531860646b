"""Each team's fairness state as an operator sees it: weight, counter, backlog, share of service.

Read-only: the leader's counters (:mod:`schedulers.fairness`), the service the workers reported
and the length of the team queues, all read by one Lua script so the numbers come from the same
instant and cost one round trip however many teams there are. The weights come from the caller
(``broker.toml`` overridden by :func:`schedulers.weights.read_overrides`), so this module never
touches the database and tests can give it any weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.states import PRIORITY_ORDER

_SCRIPT = (Path(__file__).parent / "team_status.lua").read_text()

#: ``config``: broker.toml; ``override``: set at run time through the admin API;
#: ``default``: the team is gone from broker.toml but still has state, and drains at weight 1
#: (what the scheduler loop uses for such a team).
WeightSource = Literal["config", "override", "default"]


@dataclass(frozen=True, slots=True)
class TeamStatus:
    team: str
    weight: float
    weight_source: WeightSource
    counter: float  # virtual counter: weighted service charged / weight
    backlog: dict[str, int]  # priority → queued requests (high, medium, low)
    parked: int  # set aside while every model of their chain is behind an open breaker
    queued: int  # waiting in all: the backlog and the parked
    service: float  # weighted service actually received
    share: float  # service / all teams' service; 0 when nobody has been served yet


def team_status(
    client: redis.Redis, config: BrokerConfig, overrides: Mapping[str, float]
) -> list[TeamStatus]:
    """Every team in ``config``, plus any other with a counter or service in Redis, by id.

    Raises ``redis.RedisError`` as is: the caller decides what an outage means to its user.
    """
    script = client.register_script(_SCRIPT)
    raw_counters, raw_service, raw_backlog = script(
        keys=[redis_keys.fair_counters(), redis_keys.service_received()],
        args=[redis_keys.team_queue_prefix(), redis_keys.parked(""), *(t.id for t in config.teams)],
    )
    counters = _floats(raw_counters)
    service = _floats(raw_service)
    total = sum(service.values())
    out = []
    step = 2 + len(PRIORITY_ORDER)  # the script returns team, high, medium, low, parked, team, ...
    for i in range(0, len(raw_backlog), step):
        team = _text(raw_backlog[i])
        *lengths, parked = raw_backlog[i + 1 : i + step]
        backlog = {p.value: int(n) for p, n in zip(PRIORITY_ORDER, lengths, strict=True)}
        weight, source = _weight(team, config, overrides)
        received = service.get(team, 0.0)
        out.append(
            TeamStatus(
                team=team,
                weight=weight,
                weight_source=source,
                counter=counters.get(team, 0.0),
                backlog=backlog,
                parked=int(parked),
                queued=sum(backlog.values()) + int(parked),
                service=received,
                share=received / total if total > 0 else 0.0,
            )
        )
    return sorted(out, key=lambda s: s.team)


def _weight(
    team: str, config: BrokerConfig, overrides: Mapping[str, float]
) -> tuple[float, WeightSource]:
    if team in overrides:
        return overrides[team], "override"
    if config.has_team(team):
        return config.team(team).weight, "config"
    return 1.0, "default"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _floats(flat: list) -> dict[str, float]:
    """An HGETALL reply as Lua hands it back (a flat key, value, ... list) → team → float."""
    return {_text(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}
