"""Which provider pool serves a model. Fallback chains extend this later."""

from __future__ import annotations

from broker.config import BrokerConfig, ProviderConfig


class Router:
    def __init__(self, config: BrokerConfig) -> None:
        self._config = config

    def provider_for(self, model: str) -> ProviderConfig | None:
        """The provider for ``model``; None for a model no longer in the catalog."""
        if not self._config.has_model(model):
            return None
        return self._config.provider_for_model(model)
