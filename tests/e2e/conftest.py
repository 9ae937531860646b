"""A whole stack per database: private Redis, simulator, API, scheduler, two worker pools."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack


@pytest.fixture(scope="module")
def stack(module_database_url: str, tmp_path_factory) -> Iterator[Stack]:
    settings = Settings(
        database_url=module_database_url,
        data_dir=tmp_path_factory.mktemp("stack"),
        api_port=free_port(),
    )
    with Stack(settings) as running:
        yield running
        dead = running.dead_children()
        assert not dead, f"processes died during the tests: {[c.name for c in dead]}"
