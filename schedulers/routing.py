"""Where a request may run: its model's chain, from where the request stands in it.

A model's chain is the model followed by its ``fallbacks`` in ``broker.toml``. A request starts
at the head; a request handed back after a failure (every try failed, an exhausted quota, a
prompt too long for the model) starts further down (:attr:`QueueEntry.chain_index`).

Each round the loop walks the chain from there: a model whose breaker is open (or whose
provider's is) is skipped before any call is made, for every team. A model that is healthy but
full is skipped only for teams with ``allow_fallback``; the others wait for it. The chain from
each position is precomputed, so the loop pays a dictionary lookup per request.
"""

from __future__ import annotations

from broker.config.broker_toml import BrokerConfig


class Router:
    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._routes: dict[tuple[str, int], list[tuple[str, str]]] = {}

    def routes(self, model: str, chain_index: int = 0) -> list[tuple[str, str]] | None:
        """(provider, model) choices in order from ``chain_index`` (past the end: the last
        model); None for a model no longer in the catalog."""
        key = (model, chain_index)
        routes = self._routes.get(key)
        if routes is None:
            if not self._config.has_model(model):
                return None
            chain = self._config.model(model).chain
            chain = chain[min(chain_index, len(chain) - 1) :]
            routes = [(self._config.model(name).provider, name) for name in chain]
            self._routes[key] = routes
        return routes
