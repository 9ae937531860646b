"""The routed series of the ``/metrics`` collector: what routes did, read from the database.

Requests are decided at submission (a ``metadata.tier`` hint picks the tier), then recorded
through the store's own paths: dispatched, claimed, reviewed by the cascade (an empty answer is
turned down and escalated) and finished. The collector runs on a real Redis and database and
its output is parsed with prometheus_client's own parser. Each test routes a feature of its own
and deletes its jobs afterwards: the database is shared by the session.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from broker.api.collector import (
    OTHER_FEATURE,
    BrokerCollector,
    fold_features,
    named_features,
)
from broker.config.broker_toml import BrokerConfig
from broker.schemas.http import JobCreate
from broker.store import Job, Request, transitions
from broker.store.cascades import escalate
from broker.store.route_stats import RouteStats, route_stats
from broker.store.transitions import Outcome
from broker.submission import Submitter
from workers.cascade import review

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]

IN, OUT = 1_000, 500
#: What IN input and OUT output tokens cost on each tier of the packaged route ``auto``.
PRICE = {"gpt-4o-mini": 150 + 300, "gpt-4o": 2_500 + 5_000}


@pytest.fixture
def config(settings) -> BrokerConfig:
    return settings.config


@pytest.fixture
def feature() -> str:
    """A feature no other test routes, so the shared database's other rows stay out."""
    return f"metrics-{secrets.token_hex(4)}"


@pytest.fixture
def routed(db, redis_client, config) -> Iterator[Callable[..., None]]:
    """``routed(team, feature, answers)``: one job of team's feature on route ``auto``, a
    request per entry of ``answers``: (first tier, the answer of each attempt). An empty answer
    from the small tier is turned down by the cascade and the request escalates; ``None`` is a
    failed attempt. Every job is deleted afterwards."""
    submitter = Submitter(db, redis_client, config)
    jobs: list[str] = []

    def run(team: str, feature: str, answers: list[tuple[int, list[str | None]]]) -> None:
        requests = [
            {
                "custom_id": f"r{i}",
                "model": "auto",
                "max_tokens": 64,
                "metadata": {"tier": tier},
                "messages": [{"role": "user", "content": f"The capital of France? ({i})"}],
            }
            for i, (tier, _) in enumerate(answers)
        ]
        job = submitter.submit(config.team(team), JobCreate(feature=feature, requests=requests))
        jobs.append(job.id)
        in_order = select(Request.id).where(Request.job_id == job.id).order_by(Request.seq)
        with db.session() as s:
            ids = list(s.scalars(in_order))
        for request_id, (_, said) in zip(ids, answers, strict=True):
            for attempt, output in enumerate(said, start=1):
                _attempt(db, config, request_id, attempt, output)

    yield run
    db.write(lambda s: s.execute(delete(Job).where(Job.id.in_(jobs))))


def _attempt(db, config: BrokerConfig, request_id: str, attempt: int, output: str | None) -> None:
    db.write(lambda s: transitions.mark_dispatched(s, [request_id]))
    claimed = db.write(lambda s: transitions.claim_many(s, [(request_id, attempt)]))
    claimed = claimed[(request_id, attempt)]
    if output is None:
        outcome = Outcome(
            model=claimed.model, provider="sim-openai", latency_ms=5,
            error_code="provider_rejected", error="sim-openai: no",
        )  # fmt: skip
        db.write(lambda s: transitions.finish_many(s, [(claimed, outcome)]))
        return
    outcome = Outcome(
        model=claimed.model, provider="sim-openai", latency_ms=5, output=output,
        finish_reason="stop", input_tokens=IN, output_tokens=OUT,
        cost_micros=PRICE[claimed.model],
    )  # fmt: skip
    kept, escalation = review(config, claimed, outcome)
    if escalation is not None:
        assert db.write(lambda s: escalate(s, claimed, kept, escalation))
    else:
        assert db.write(lambda s: transitions.finish_many(s, [(claimed, kept)])) == [True]


def reader(db, config: BrokerConfig, reads: list[int]) -> Callable[[], list[RouteStats]]:
    """What the API gives the collector: every routed request's figures, counting reads."""

    def read() -> list[RouteStats]:
        reads.append(1)
        with db.session() as s:
            return route_stats(s, config)

    return read


def scrape(collector: BrokerCollector) -> tuple[str, Series]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return text, out


def mine(series: Series, name: str, feature: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` for ``feature``, keyed by their other label values (sorted by
    label name: model, route, team; or route, team)."""
    return {
        tuple(v for k, v in labels if k != "feature"): value
        for labels, value in series.get(name, {}).items()
        if dict(labels)["feature"] == feature
    }


def test_routed_requests_escalations_and_cost_against_all_flagship(
    db, redis_client, config, routed, feature
):
    routed("product", feature, [
        (0, ["", "Paris."]),  # the small tier answers nothing: escalated, then the flagship
        (0, ["Paris."]),  # the small tier's answer passes the checks
        (1, ["Paris."]),  # straight to the flagship
        (0, [None]),  # failed: not in the figures (nor in the report)
    ])  # fmt: skip
    routed("content", feature, [(0, ["Paris."])])
    reads: list[int] = []
    collector = BrokerCollector(redis_client, config, routes=reader(db, config, reads))
    text, series = scrape(collector)

    assert mine(series, "inference_broker_routed_requests_total", feature) == {
        ("gpt-4o-mini", "auto", "product"): 1,
        ("gpt-4o", "auto", "product"): 2,
        ("gpt-4o-mini", "auto", "content"): 1,
    }
    assert mine(series, "inference_broker_routed_escalations_total", feature) == {
        ("auto", "product"): 1,
        ("auto", "content"): 0,
    }
    small, flagship = PRICE["gpt-4o-mini"], PRICE["gpt-4o"]
    cost = mine(series, "inference_broker_routed_cost_usd_total", feature)
    # the escalated request paid for both tiers
    assert cost == {
        ("auto", "product"): pytest.approx((small + flagship + small + flagship) / 1e6),
        ("auto", "content"): pytest.approx(small / 1e6),
    }
    assert mine(series, "inference_broker_routed_flagship_cost_usd_total", feature) == {
        ("auto", "product"): pytest.approx(3 * flagship / 1e6),
        ("auto", "content"): pytest.approx(flagship / 1e6),
    }
    assert "# TYPE inference_broker_routed_requests_total counter" in text
    assert "# HELP inference_broker_routed_flagship_cost_usd_total" in text
    # the series agree with GET /v1/reports/routes, which reads the same function
    with db.session() as s:
        (report,) = [r for r in route_stats(s, config, "product") if r.feature == feature]
    assert (report.requests, report.escalated, report.by_tier) == (3, 1, {0: 1, 1: 2})
    assert reads == [1]


def test_the_history_is_read_at_most_every_routes_every_s(
    db, redis_client, config, routed, feature
):
    routed("product", feature, [(1, ["Paris."])])
    reads: list[int] = []
    cached = BrokerCollector(
        redis_client, config, routes=reader(db, config, reads), routes_every_s=3600
    )
    fresh_reads: list[int] = []
    fresh = BrokerCollector(
        redis_client, config, routes=reader(db, config, fresh_reads), routes_every_s=0
    )
    name = "inference_broker_routed_requests_total"
    assert mine(scrape(cached)[1], name, feature) == {("gpt-4o", "auto", "product"): 1}
    routed("product", feature, [(1, ["Paris."])])
    assert mine(scrape(cached)[1], name, feature) == {("gpt-4o", "auto", "product"): 1}
    assert reads == [1], "the second scrape within the hour served the first reading"
    assert mine(scrape(fresh)[1], name, feature) == {("gpt-4o", "auto", "product"): 2}
    assert mine(scrape(fresh)[1], name, feature) == {("gpt-4o", "auto", "product"): 2}
    assert fresh_reads == [1, 1]


def test_a_failed_read_is_not_kept_and_raises(db, redis_client, config, routed, feature):
    routed("product", feature, [(1, ["Paris."])])
    reads: list[int] = []
    works = reader(db, config, reads)
    outcomes: list[Exception | None] = [OperationalError("SELECT", {}, Exception("gone")), None]

    def flaky() -> list[RouteStats]:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return works()

    collector = BrokerCollector(redis_client, config, routes=flaky, routes_every_s=3600)
    with pytest.raises(OperationalError):  # the API turns this into a 503
        scrape(collector)
    series = scrape(collector)[1]
    assert mine(series, "inference_broker_routed_requests_total", feature) == {
        ("gpt-4o", "auto", "product"): 1
    }
    assert reads == [1]


def test_a_team_view_has_no_routed_series_and_reads_nothing(
    db, redis_client, config, routed, feature
):
    routed("product", feature, [(1, ["Paris."])])
    reads: list[int] = []
    collector = BrokerCollector(
        redis_client, config, team="product", routes=reader(db, config, reads), routes_every_s=0
    )
    text, series = scrape(collector)
    assert "inference_broker_routed" not in text and reads == []
    assert "inference_broker_queue_depth" in series, "the team's own series are still there"


def stats(team: str, feature: str, n: int, model: str = "gpt-4o") -> RouteStats:
    return RouteStats(
        "auto", team, feature, requests=n, by_tier={1: n}, by_model={model: n}, escalated=1,
        cache_hits=0, cost_micros=10 * n, flagship_cost_micros=100 * n,
    )  # fmt: skip


def test_past_the_cap_a_teams_unnamed_features_fold_into_other():
    rows = [
        stats("product", "alpha", 1),
        stats("product", "beta", 2, model="gpt-4o-mini"),
        stats("product", "search", 4),  # named in broker.toml: keeps its label
        stats("content", "alpha", 8),
        stats("content", "gamma", 16),
    ]
    folded = {(r.team, r.feature): r for r in fold_features(rows, {"search"}, cap=2)}
    assert set(folded) == {
        ("product", OTHER_FEATURE), ("product", "search"), ("content", "alpha"),
        ("content", "gamma"),
    }, "content has two features, within the cap: untouched"  # fmt: skip
    other = folded[("product", OTHER_FEATURE)]
    assert (other.requests, other.escalated, other.cost_micros, other.flagship_cost_micros) == (
        3, 2, 30, 300,
    )  # fmt: skip
    assert other.by_model == {"gpt-4o": 1, "gpt-4o-mini": 2} and other.by_tier == {1: 3}
    assert folded[("product", "search")].requests == 4
    assert fold_features(rows, {"search"}, cap=3) == sorted(
        rows, key=lambda r: (r.route, r.team, r.feature)
    ), "at the cap nothing folds"
    assert not OTHER_FEATURE[0].isalnum(), "no feature can be called that"


def test_features_named_in_broker_toml(config):
    named = named_features(config)
    assert {"chatbot", "search"} <= named, "the packaged cache policies"
    assert {"classification", "content-moderation"} <= named, "the packaged route's pins"
