"""Public request and response models of the HTTP API, shared by the server, the Python client
and the CLI: what a caller submits (:mod:`.requests`), jobs and results (:mod:`.http`, which
re-exports the others' public names), the admin API (:mod:`.admin`), spend reports
(:mod:`.reports`), API keys (:mod:`.keys`), the cache's (:mod:`.cache`), and the field types
they share (:mod:`.fields`)."""
