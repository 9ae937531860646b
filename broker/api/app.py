"""FastAPI application factory: one set of process resources, shared by every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from broker import __version__
from broker.api import (
    admin,
    anthropic_messages,
    body_limit,
    breakers,
    cache,
    errors,
    jobs,
    keys,
    message_batches,
    metrics,
    openai_batches,
    openai_chat,
    openai_files,
    reports,
    webhooks,
)
from broker.api.resources import ApiResources
from broker.config.settings import Settings
from broker.dropin.interactive import Interactive, Listener
from broker.store import Database
from broker.submission import Submitter


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings.config
        db = Database(settings.database_url_or_default, pool_size=settings.db_pool_size)
        redis_url = settings.redis_url or "redis://127.0.0.1:6379/0"
        client = redis.Redis.from_url(redis_url)
        submitter = Submitter.from_settings(settings, db, client, config)
        listener = Listener(redis_url)
        listener.start()
        app.state.broker = ApiResources(
            config=config,
            db=db,
            redis=client,
            submitter=submitter,
            interactive=Interactive(submitter, db, listener),
        )
        app.state.metrics = metrics.registry(app.state.broker)
        yield
        await listener.stop()
        client.close()
        db.dispose()

    app = FastAPI(
        title="inference-broker",
        version=__version__,
        description="Submit batches of LLM requests; poll or take a webhook for results and costs.",
        lifespan=lifespan,
    )
    errors.install(app)
    body_limit.install(app, settings.max_body_bytes)
    app.include_router(jobs.router)
    app.include_router(message_batches.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(keys.router)
    app.include_router(breakers.router)
    app.include_router(cache.router)
    app.include_router(reports.router)
    app.include_router(metrics.router)
    app.state.files_dir = settings.data_dir / "files"  # OpenAI Files API uploads
    app.include_router(openai_files.router)
    app.include_router(openai_batches.router)
    app.include_router(openai_chat.router)
    app.include_router(anthropic_messages.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        resources: ApiResources = app.state.broker
        resources.redis.ping()
        semantic = resources.submitter.semantic
        return {
            "status": "ok",
            "version": __version__,
            "semantic_cache": semantic.state if semantic is not None else "off",
        }

    return app
