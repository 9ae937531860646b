"""Response models of ``/v1/admin/cache``, shared by the server and ``inference-broker cache``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CacheStatsOut(BaseModel):
    """One team's feature: how much of its traffic the response cache answered."""

    team: str
    feature: str
    mode: str = Field(description="Its policy now: off, exact or semantic.")
    scope: str = Field(description="team, user or shared.")
    requests: int = Field(description="Requests answered, by a provider or the cache.")
    exact_hits: int
    semantic_hits: int
    single_flight_hits: int
    hit_rate: float = Field(description="Hits of every kind over requests answered.")
    cost_micros: int = Field(description="What its calls were charged.")
    cost_avoided_micros: int = Field(description="What the answers its hits reused had cost.")
    cost_avoided_usd: str
    semantic_max_wrong_hit_rate: float | None = Field(
        default=None,
        description="Semantic mode: the wrong-hit rate the operator accepts; the decision rule "
        "keeps its calibrated estimate at or under it.",
    )


class CacheStatsList(BaseModel):
    stats: list[CacheStatsOut]


class CachePurgeOut(BaseModel):
    team: str | None
    feature: str | None
    removed: int = Field(description="Cached answers removed.")
