"""The API process's shared resources, and the FastAPI dependency that hands them to routes.

The app factory (:mod:`broker.api.app`) builds one :class:`ApiResources` at start and keeps it
on ``app.state``; routers take it as a parameter (``resources: Resources``) or, in helpers that
already have the request, from :func:`resources_of`. Routers import this module, never the app,
so the app may import every router without a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from broker.config.broker_toml import BrokerConfig
from broker.dropin.interactive import Interactive
from broker.store import Database
from broker.submission import Submitter


@dataclass
class ApiResources:
    config: BrokerConfig
    db: Database
    redis: redis.Redis
    submitter: Submitter
    interactive: Interactive | None = None  # the SDK endpoints' path (started with the app)


def resources_of(request: Request) -> ApiResources:
    """The resources of the app serving ``request``."""
    return request.app.state.broker


async def _resources(request: Request) -> ApiResources:
    """:func:`resources_of` as a dependency. Async because FastAPI runs a plain ``def``
    dependency in a worker thread: a thread hop on every request, for an attribute read."""
    return resources_of(request)


Resources = Annotated[ApiResources, Depends(_resources)]
