"""inference-broker: the front door and the record.

Settings and the model catalog, public schemas, the HTTP API, the Python client, the result
store and the CLI live here. Scheduling policy lives in :mod:`schedulers`, provider calls in
:mod:`workers`.
"""

__version__ = "0.1.0"
