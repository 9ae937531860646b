"""Where a request may run: its model, then, if the team allows it, the rest of its chain.

A model's chain is the model followed by its ``fallbacks`` in ``broker.toml``. A team with
``allow_fallback`` may send a request to the next model in the chain when the first choice's
provider is full; otherwise the request waits for its own model. Choosing is precomputed per
(model, allowed) pair, so the loop pays a dictionary lookup per request.
"""

from __future__ import annotations

from broker.config import BrokerConfig


class Router:
    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._routes: dict[tuple[str, bool], list[tuple[str, str]]] = {}

    def routes(self, model: str, allow_fallback: bool) -> list[tuple[str, str]] | None:
        """(provider, model) choices in order; None for a model no longer in the catalog."""
        key = (model, allow_fallback)
        routes = self._routes.get(key)
        if routes is None:
            if not self._config.has_model(model):
                return None
            chain = self._config.model(model).chain if allow_fallback else [model]
            routes = [(self._config.model(name).provider, name) for name in chain]
            self._routes[key] = routes
        return routes
