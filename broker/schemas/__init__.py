"""Public request and response models of the HTTP API, shared by the server, the Python client
and the CLI: jobs and results (:mod:`.http`), spend reports (:mod:`.reports`), API keys
(:mod:`.keys`)."""
