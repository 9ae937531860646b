"""Spend reports on SQLite and PostgreSQL: the store's grouping, and ``/v1/reports`` in-process.

Ledger rows are written directly, with chosen days and costs, for two teams over three UTC days
(two of them touching midnight), and every report is checked against sums computed here.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete, func, select, text

from broker.api import create_app
from broker.api.charts import daily_spend_png
from broker.errors import InvalidRequest
from broker.money import format_usd
from broker.schemas.http import JobCreate
from broker.store import LedgerEntry, Request
from broker.store.reports import DIMENSIONS, daily_spend_by_team, spend
from broker.submission import Submitter

ADMIN = {"Authorization": "Bearer ib-dev-admin"}
PRODUCT = {"Authorization": "Bearer ib-dev-product"}
CONTENT = {"Authorization": "Bearer ib-dev-content"}
TODAY = datetime.now(UTC).date()
D0, D1, D2 = TODAY - timedelta(days=2), TODAY - timedelta(days=1), TODAY
SUMS = ("input_tokens", "cached_input_tokens", "output_tokens", "cost_micros",
        "cache_savings_micros")  # fmt: skip


@dataclass(frozen=True)
class Charge:
    team: str
    feature: str
    req: int  # which request of the (team, feature) job; same req and a higher attempt: a retry
    model: str
    provider: str
    at: datetime
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int
    cache_savings_micros: int
    attempt: int = 1

    @property
    def day(self) -> date:
        return self.at.date()


def at(day: date, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss, us), tzinfo=UTC)


OPENAI, ANTHROPIC = "sim-openai", "sim-anthropic"
# fmt: off
CHARGES = [
    Charge("product", "chatbot", 0, "gpt-4o-mini", OPENAI, at(D0, 9), 100, 20, 50, 1_000, 30),
    Charge("product", "chatbot", 0, "gpt-4o-mini", OPENAI, at(D0, 9, 1), 90, 30, 45, 950, 44,
           attempt=2),
    Charge("product", "chatbot", 1, "gpt-4o-mini", OPENAI, at(D0, 23, 59, 59, 999_999),
           200, 0, 10, 2_500, 0),
    Charge("product", "chatbot", 2, "claude-haiku-4-5", ANTHROPIC, at(D1, 0), 150, 50, 40,
           7_300, 120),
    Charge("product", "chatbot", 3, "claude-haiku-4-5", ANTHROPIC, at(D2, 0, 30), 80, 0, 20,
           3_141, 0),
    Charge("product", "search", 0, "gpt-4.1-nano", OPENAI, at(D1, 12), 40, 0, 8, 77, 0),
    Charge("product", "search", 1, "gpt-4.1-nano", OPENAI, at(D2, 13), 60, 10, 9, 91, 5),
    Charge("content", "summarization", 0, "claude-haiku-4-5", ANTHROPIC, at(D0, 1), 500, 100,
           90, 12_345, 400),
    Charge("content", "summarization", 1, "gpt-4o-mini", OPENAI, at(D1, 23, 59), 300, 0, 60,
           4_000, 0),
    Charge("content", "summarization", 2, "gpt-4o-mini", OPENAI, at(D2, 6), 310, 40, 61,
           4_100, 9),
    Charge("content", "translation", 0, "gpt-4o-mini", OPENAI, at(D2, 18), 9_000, 0, 7_000,
           1_234_567, 0),
]
# fmt: on


def expected(charges, group_by, *, team=None, since=None, until=None) -> dict[tuple, dict]:
    """The report computed here: group key → requests, attempts and every sum."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"requests": set(), "attempts": 0,
                                                     **dict.fromkeys(SUMS, 0)})  # fmt: skip
    for c in charges:
        if (team and c.team != team) or (since and c.day < since) or (until and c.day > until):
            continue
        group = groups[tuple(getattr(c, d) for d in group_by)]
        group["requests"].add((c.team, c.feature, c.req))
        group["attempts"] += 1
        for name in SUMS:
            group[name] += getattr(c, name)
    return {key: {**g, "requests": len(g["requests"])} for key, g in groups.items()}


def as_dict(row) -> dict:
    return {name: getattr(row, name) for name in ("requests", "attempts", *SUMS)}


@pytest.fixture
def empty_ledger(db):
    """The ledger lives in the session's shared database: each test starts and ends empty."""
    db.write(lambda s: s.execute(delete(LedgerEntry)))
    yield
    db.write(lambda s: s.execute(delete(LedgerEntry)))


@pytest.fixture
def ledger(db, redis_client, settings, empty_ledger) -> list[Charge]:
    """CHARGES in the ledger, each against a real request of a real job (the foreign key)."""
    submitter = Submitter(db, redis_client, settings.config)
    request_ids: dict[tuple[str, str, int], tuple[str, str]] = {}  # → (request id, job id)
    for team, feature in sorted({(c.team, c.feature) for c in CHARGES}):
        n = 1 + max(c.req for c in CHARGES if (c.team, c.feature) == (team, feature))
        body = JobCreate(
            feature=feature,
            requests=[{"custom_id": f"r{i}", "model": "gpt-4o-mini",
                       "messages": [{"role": "user", "content": "x"}]} for i in range(n)],
        )  # fmt: skip
        job = submitter.submit(settings.config.team(team), body)
        with db.session() as s:
            ids = s.scalars(
                select(Request.id).where(Request.job_id == job.id).order_by(Request.seq)
            )
            for i, rid in enumerate(ids):
                request_ids[(team, feature, i)] = (rid, job.id)
    with db.session() as s:
        for c in CHARGES:
            rid, job_id = request_ids[(c.team, c.feature, c.req)]
            s.add(LedgerEntry(
                request_id=rid, attempt=c.attempt, job_id=job_id,
                team_id=c.team, feature=c.feature, model=c.model, provider=c.provider,
                input_tokens=c.input_tokens, cached_input_tokens=c.cached_input_tokens,
                output_tokens=c.output_tokens, cost_micros=c.cost_micros,
                cache_savings_micros=c.cache_savings_micros, created_at=c.at,
            ))  # fmt: skip
    return CHARGES


@pytest.fixture
def api(settings, ledger) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


# --- the store ----------------------------------------------------------------------------------

GROUPINGS = [(d,) for d in DIMENSIONS] + [
    ("team", "feature", "model"), ("day", "team"), ("provider", "model"), DIMENSIONS,
]  # fmt: skip


@pytest.mark.parametrize("group_by", GROUPINGS, ids=["-".join(g) for g in GROUPINGS])
def test_each_grouping_sums_like_the_ledger(db, ledger, group_by):
    with db.session() as s:
        report = spend(s, group_by=group_by)
        raw = s.execute(select(func.count(), func.sum(LedgerEntry.cost_micros))).one()
    got = {tuple(row.key(group_by).values()): as_dict(row) for row in report.rows}
    assert got == expected(ledger, group_by)
    assert [tuple(r.key(group_by).values()) for r in report.rows] == sorted(got), "ordered"
    for name in ("attempts", *SUMS):
        assert getattr(report.totals, name) == sum(getattr(r, name) for r in report.rows)
    assert (report.totals.attempts, report.totals.cost_micros) == (raw[0], int(raw[1]))
    assert report.totals.requests == len({(c.team, c.feature, c.req) for c in ledger}) == 10
    assert report.totals.cost_micros == sum(c.cost_micros for c in CHARGES) == 1_270_071


def test_since_and_until_are_inclusive_utc_days(db, ledger):
    group_by = ("team", "day")
    with db.session() as s:
        for since, until in [(D1, D1), (D0, D0), (D1, None), (None, D1), (D2, D2)]:
            report = spend(s, group_by=group_by, since=since, until=until)
            got = {tuple(r.key(group_by).values()): as_dict(r) for r in report.rows}
            assert got == expected(ledger, group_by, since=since, until=until), (since, until)
        only_d1 = spend(s, group_by=("day",), since=D1, until=D1)
    # 23:59:59.999999 on D0 stays out, 00:00:00 on D1 and 23:59 on D1 are in
    assert [r.day for r in only_d1.rows] == [D1]
    assert only_d1.totals.cost_micros == 7_300 + 77 + 4_000


def test_a_team_filter_narrows_rows_and_totals(db, ledger):
    with db.session() as s:
        report = spend(s, group_by=("feature",), team="content")
    assert {r.feature for r in report.rows} == {"summarization", "translation"}
    assert report.totals.cost_micros == 12_345 + 4_000 + 4_100 + 1_234_567


def test_days_are_utc_whatever_the_session_time_zone(db, ledger):
    with db.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14: most rows move a day
        report = spend(s, group_by=("day",), since=D0, until=D0)
    assert [r.day for r in report.rows] == [D0]
    assert report.totals.cost_micros == 1_000 + 950 + 2_500 + 12_345


def test_daily_spend_fills_missing_days_with_zero(db, ledger):
    with db.session() as s:
        series = daily_spend_by_team(s, days=5, team=None, today=D2)
        one = daily_spend_by_team(s, days=1, team="product", today=D2)
        past = daily_spend_by_team(s, days=3, team=None, today=D0 - timedelta(days=1))
    window = [D2 - timedelta(days=i) for i in range(4, -1, -1)]
    assert list(series) == ["content", "product"]
    for team, by_day in series.items():
        assert list(by_day) == window
        want = expected(ledger, ("day",), team=team)
        assert by_day == {d: want.get((d,), {"cost_micros": 0})["cost_micros"] for d in window}
    assert series["product"][window[0]] == 0
    assert one == {"product": {D2: 3_141 + 91}}
    assert past == {}


def test_an_empty_ledger_reports_zero(db, empty_ledger):
    with db.session() as s:
        report = spend(s, group_by=("team",))
        assert daily_spend_by_team(s, days=30, team=None) == {}
    assert report.rows == [] and as_dict(report.totals) == dict.fromkeys(as_dict(report.totals), 0)


@pytest.mark.parametrize("group_by", [("team", "week"), (), ("",)])
def test_the_store_refuses_an_unknown_dimension(db, group_by):
    with db.session() as s, pytest.raises(InvalidRequest) as caught:
        spend(s, group_by=group_by)
    assert caught.value.field == "group_by"


# --- the API ------------------------------------------------------------------------------------


def get_spend(api: TestClient, headers: dict, **params) -> dict:
    resp = api.get("/v1/reports/spend", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_json_has_rows_totals_and_usd_strings(api, ledger):
    body = get_spend(api, ADMIN)
    assert (body["group_by"], body["team"], body["since"], body["until"]) == (
        ["team", "feature", "model"], None, None, None,
    )  # fmt: skip
    want = expected(ledger, ("team", "feature", "model"))
    assert {(r["team"], r["feature"], r["model"]) for r in body["rows"]} == set(want)
    for row in body["rows"]:
        assert set(row) == {"team", "feature", "model", "requests", "attempts", *SUMS,
                            "cost_usd", "cache_savings_usd", "cache_hits", "cost_avoided_micros",
                            "cost_avoided_usd"}  # fmt: skip
        assert (row["cache_hits"], row["cost_avoided_micros"]) == (0, 0)  # no hits here
        assert {k: row[k] for k in ("requests", "attempts", *SUMS)} == want[
            (row["team"], row["feature"], row["model"])
        ]
        assert row["cost_usd"] == format_usd(row["cost_micros"], places=6)
    totals = body["totals"]
    assert totals["cost_micros"] == 1_270_071 and totals["cost_usd"] == "$1.270071"
    assert totals["cache_savings_micros"] == sum(c.cache_savings_micros for c in ledger)
    assert "team" not in totals

    days = get_spend(api, ADMIN, group_by="day", since=D1.isoformat(), until=D2.isoformat())
    assert [r["day"] for r in days["rows"]] == [D1.isoformat(), D2.isoformat()]
    assert (days["since"], days["until"]) == (D1.isoformat(), D2.isoformat())


def test_csv_parses_back_to_the_same_numbers(api):
    resp = api.get(
        "/v1/reports/spend", params={"group_by": "team,provider", "format": "csv"}, headers=ADMIN
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"] == 'attachment; filename="spend.csv"'
    header, *lines, total = list(csv.reader(io.StringIO(resp.text)))
    assert header[:3] == ["team", "provider", "requests"] and "cost_usd" in header
    body = get_spend(api, ADMIN, group_by="team,provider")
    as_rows = [dict(zip(header, line, strict=True)) for line in lines]
    assert len(as_rows) == len(body["rows"]) == 4
    for parsed, row in zip(as_rows, body["rows"], strict=True):
        assert {k: str(v) for k, v in row.items()} == parsed
    assert total[:2] == ["total", ""]
    totals = dict(zip(header[2:], total[2:], strict=True))
    assert totals == {k: str(v) for k, v in body["totals"].items()}
    assert sum(int(r["cost_micros"]) for r in as_rows) == int(totals["cost_micros"])


def test_a_team_key_sees_only_its_own_team(api, ledger):
    admin_png = api.get("/v1/reports/daily.png", headers=ADMIN).content
    for headers, team, other in [(PRODUCT, "product", "content"), (CONTENT, "content", "product")]:
        for group_by in ("team,feature,model", "feature", "model,provider,day"):
            body = get_spend(api, headers, group_by=group_by)
            dims = tuple(group_by.split(","))
            assert body["team"] == team
            got = {
                tuple(date.fromisoformat(r[d]) if d == "day" else r[d] for d in dims): {
                    k: r[k] for k in ("requests", "attempts", *SUMS)
                }
                for r in body["rows"]
            }
            assert got == expected(ledger, dims, team=team)
            want_total = sum(c.cost_micros for c in ledger if c.team == team)
            assert body["totals"]["cost_micros"] == want_total
        assert get_spend(api, headers, team=team)["totals"]["cost_micros"] == want_total
        for path in ("/v1/reports/spend", "/v1/reports/daily.png"):
            resp = api.get(path, params={"team": other}, headers=headers)
            assert resp.status_code == 404, path
            assert resp.json()["error"] == {
                "type": "not_found", "message": f"no team '{other}' for this key", "field": None,
            }  # fmt: skip
        own_png = api.get("/v1/reports/daily.png", headers=headers).content
        assert own_png == api.get(f"/v1/reports/daily.png?team={team}", headers=ADMIN).content
        assert own_png != admin_png, "the admin's chart has both teams; a team's has one"


def test_the_admin_key_sees_every_team_and_may_narrow(api, ledger):
    assert {r["team"] for r in get_spend(api, ADMIN, group_by="team")["rows"]} == {
        "content", "product",
    }  # fmt: skip
    narrowed = get_spend(api, ADMIN, group_by="team", team="content")
    assert [r["team"] for r in narrowed["rows"]] == ["content"] and narrowed["team"] == "content"
    resp = api.get("/v1/reports/spend", params={"team": "nope"}, headers=ADMIN)
    assert resp.status_code == 404 and "known: content, platform, product" in resp.text


@pytest.mark.parametrize(
    ("path", "params", "field", "words"),
    [
        ("spend", {"group_by": "team,week"}, "group_by", "unknown dimension 'week'"),
        ("spend", {"group_by": ""}, "group_by", "at least one dimension"),
        ("spend", {"since": "2026-02-30"}, "since", "valid date"),
        ("spend", {"until": "yesterday"}, "until", "valid date"),
        ("spend", {"since": "2026-03-02", "until": "2026-03-01"}, "until", "on or after since"),
        ("spend", {"format": "xml"}, "format", "'json' or 'csv'"),
        ("daily.png", {"days": "0"}, "days", "greater than or equal to 1"),
        ("daily.png", {"days": "400"}, "days", "less than or equal to 366"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(api, path, params, field, words):
    resp = api.get(f"/v1/reports/{path}", params=params, headers=PRODUCT)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request" and error["field"] == field
    assert words in error["message"]


def test_the_widest_days_are_a_report_not_a_500(api, ledger):
    """``until`` on the last day a date can hold: the day after it overflowed (500)."""
    report = get_spend(api, ADMIN, since="0001-01-01", until="9999-12-31", group_by="team")
    assert report["totals"]["cost_micros"] == sum(c.cost_micros for c in ledger)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ib-dev-nope"}])
def test_reports_need_a_key(api, headers):
    for path in ("/v1/reports/spend", "/v1/reports/daily.png"):
        resp = api.get(path, headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"


def test_the_chart_is_a_png_of_fixed_size(api):
    resp = api.get("/v1/reports/daily.png", params={"days": 7}, headers=ADMIN)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(resp.content))
    assert (image.format, image.size) == ("PNG", (1200, 600))


def test_an_empty_ledger_still_charts(settings, redis_client, empty_ledger):
    with TestClient(create_app(settings)) as client:
        resp = client.get("/v1/reports/daily.png", headers=PRODUCT)
        assert get_spend(client, ADMIN)["rows"] == []
    assert resp.status_code == 200
    image = Image.open(io.BytesIO(resp.content))
    assert (image.format, image.size) == ("PNG", (1200, 600))
    assert resp.content == daily_spend_png({}), "the 'no spend yet' chart"
