"""The official OpenAI and Anthropic SDKs against the broker, unchanged.

Each surface translates its wire format to the broker's own request (:class:`RequestIn`) and
back, so everything behind the front door (fair scheduling, budgets, routes, the cache,
fallback, attribution) applies to SDK traffic exactly as to ``/v1/jobs``:

- :mod:`.wire`: what both surfaces share (text of content blocks, finish reasons, the
  parameters we cannot honour and say so);
- :mod:`.openai_wire`, :mod:`.anthropic_wire`: chat completions and messages, both ways;
- :mod:`.interactive`: one request through the queues at ``high`` priority, waited for;
- :mod:`.streams`: an answer as the SSE event sequence each SDK reads.
"""
