"""The Python client of the broker's HTTP API.

::

    from broker.client import BrokerClient

    with BrokerClient("http://localhost:8000", api_key) as client:
        job = client.submit_batch(requests, feature="summarization")
        job.wait(progress=True)
        for result in job.results():
            print(result.custom_id, result.status, result.output)

:class:`AsyncBrokerClient` / :class:`AsyncJob` are the same with ``await`` and ``async for``.
A webhook receiver checks what it got with :func:`verify_webhook`.
Every error is a :class:`broker.errors.BrokerError`; see :mod:`broker.client._errors`.
"""

from broker.client._async import AsyncBrokerClient, AsyncJob
from broker.client._errors import (
    AuthenticationError,
    BrokerAPIError,
    InvalidRequestError,
    JobTimeout,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    WebhookVerificationError,
)
from broker.client._sync import BrokerClient, Job
from broker.client._webhooks import verify_webhook
from broker.schemas.http import JobOut, Message, RequestIn, ResultOut

__all__ = [  # noqa: RUF022 - pinned in this order by tests/broker/test_client.py
    "BrokerClient",
    "AsyncBrokerClient",
    "Job",
    "AsyncJob",
    "RequestIn",
    "Message",
    "JobOut",
    "ResultOut",
    "BrokerAPIError",
    "AuthenticationError",
    "NotFoundError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "JobTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]
