"""``/v1/admin/cache``: the response cache's hit rates and savings per team and feature, and
purging what a team (or one of its features) stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from broker.api.admin import known_team
from broker.api.auth import admin_router
from broker.api.errors import store_errors
from broker.api.resources import Resources
from broker.cache.exact import ExactCache
from broker.cache.semantic.serving import SemanticCache
from broker.money import format_usd
from broker.schemas.cache import CachePurgeOut, CacheStatsList, CacheStatsOut
from broker.store.cache_stats import cache_stats

router = admin_router(404)

TeamParam = Annotated[str | None, Query(max_length=64, description="Only this team.")]
FeatureParam = Annotated[
    str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Only this.")
]


@router.get("/cache", response_model=CacheStatsList)
def list_cache_stats(resources: Resources, team: TeamParam = None) -> CacheStatsList:
    """Hits (exact, semantic, single-flight), hit rate and cost avoided per team and feature,
    with each one's policy now."""
    config = resources.config
    with store_errors(), resources.db.session() as session:
        rows = cache_stats(session, team)
    out = []
    for row in rows:
        policy = config.cache.policy(row.team, row.feature)
        out.append(
            CacheStatsOut(
                team=row.team,
                feature=row.feature,
                mode=policy.mode,
                scope=policy.scope,
                requests=row.requests,
                exact_hits=row.exact_hits,
                semantic_hits=row.semantic_hits,
                single_flight_hits=row.single_flight_hits,
                hit_rate=round(row.hit_rate, 4),
                cost_micros=row.cost_micros,
                cost_avoided_micros=row.cost_avoided_micros,
                cost_avoided_usd=format_usd(row.cost_avoided_micros, places=6),
                semantic_max_wrong_hit_rate=policy.max_wrong_hit_rate
                if policy.mode == "semantic"
                else None,
            )
        )
    return CacheStatsList(stats=out)


@router.delete("/cache", response_model=CachePurgeOut)
def purge_cache(
    request: Request, resources: Resources, team: TeamParam = None, feature: FeatureParam = None
) -> CachePurgeOut:
    """Remove the cached answers a team stored (``team``), a team's feature (both), a feature
    for every team (``feature``), or everything (neither). Later requests ask the providers."""
    if team is not None:
        known_team(request, team)
    with store_errors():
        removed = ExactCache(resources.redis).purge(team, feature)
        SemanticCache(resources.redis).purge(team, feature)
    return CachePurgeOut(team=team, feature=feature, removed=removed)
