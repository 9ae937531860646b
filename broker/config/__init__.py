"""Configuration, read once at start: ``broker.toml`` (providers, the model catalog, teams,
budgets, retries and breakers, webhooks) and the process settings from ``BROKER_*``.

Nothing here talks to Redis or the database; every other package may import it.
"""
