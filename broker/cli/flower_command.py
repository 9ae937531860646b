"""``inference-broker flower``: Flower on the workers' own Celery app, broker and queues.

Flower is built in this process rather than through ``celery flower``: the Celery app is
:func:`workers.celery_app.create_celery_app` (the same broker URL and transport options as the
pools), the options are set here and nowhere else (no ``flowerconfig.py`` from the working
directory, no ``FLOWER_*`` variables, no password on the command line), and nothing persists
(no shelve file of task history).

- **Auth.** ``BROKER_FLOWER_BASIC_AUTH`` (``user:password``) turns on HTTP basic auth for the
  UI and the API. Without it Flower may listen on a loopback address only, and its HTTP API
  answers 401 (Flower's own rule); on any other address the command refuses to start.
- **Queues.** Flower's ``/api/queues/length`` (and the Broker page) counts the queues the
  workers report consuming (``LLEN`` on Redis), and the app's ``task_queues`` when no worker
  has reported yet; those are set to every provider's queue, so they are listed from the start.
- **Task events.** Workers send task events when ``BROKER_TASK_EVENTS`` is true. Flower would
  otherwise turn them on in every worker every 5 s; here it does so only when the setting is
  on, so starting Flower does not change what the pools do. With the setting off Flower still
  shows the workers (heartbeats, ``inspect``) and the queue lengths, but no tasks.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import signal
import sys

from kombu import Queue

from broker.config.settings import Settings
from broker.errors import BrokerError, ConfigError
from workers.celery_app import create_celery_app

log = logging.getLogger(__name__)

AUTH_ENV = "BROKER_FLOWER_BASIC_AUTH"


def is_loopback(address: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: reachable from this machine only."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False


def basic_auth(settings: Settings, address: str) -> str | None:
    """The ``user:password`` to require, checked; refuses no auth off the loopback."""
    credentials = settings.flower_basic_auth or None  # set but empty: as if unset
    if credentials is not None:
        user, _, password = credentials.partition(":")
        if not user or not password:
            raise ConfigError(AUTH_ENV, "value", 'must be "user:password", both non-empty')
        return credentials
    if not is_loopback(address):
        raise BrokerError(
            f"refusing to run Flower without authentication on {address or 'every interface'}: "
            f'set {AUTH_ENV}="user:password", or use --address 127.0.0.1'
        )
    return None


def flower_celery_app(settings: Settings):
    """The workers' Celery app, knowing every provider queue (for Flower's queue lengths)."""
    app = create_celery_app(settings, kombu_transport=True)  # queue lengths by the URL scheme
    app.conf.task_queues = [Queue(p.queue) for p in settings.config.providers]
    return app


def run_flower(settings: Settings, *, address: str, port: int) -> None:
    """Serve Flower until SIGTERM or Ctrl-C."""
    credentials = basic_auth(settings, address)

    from flower.app import Flower
    from flower.options import default_options as options
    from flower.urls import settings as web_settings

    options.address = address
    options.port = port
    options.basic_auth = [credentials] if credentials else []
    options.persistent = False
    # Flower asks the workers to send task events every few seconds, unless told never to.
    options.enable_events = settings.task_events is not False
    # 200s are noise; 4xx/5xx (a wrong password, say) stay at WARNING and above.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)

    app = Flower(capp=flower_celery_app(settings), options=options, **web_settings)
    atexit.register(app.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bound = app.start_http_server()
    log.info(
        "Flower on http://%s:%s (%s); queues: %s; task events %s",
        address,
        bound,
        "basic auth" if credentials else "no auth: API disabled",
        ", ".join(p.queue for p in settings.config.providers),
        "on" if options.enable_events else "off (BROKER_TASK_EVENTS=false: no task view)",
    )
    try:
        app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
