"""What becomes of a request whose attempt produced no completion: down its chain, again, or
failed, decided from the error's class (see ``broker.errors``):

- rate limited (429): queued again on the same model; the scheduler holds the provider back for
  the ``retry-after`` (teams that allow it spill down the chain meanwhile). Never a failure.
- breaker open (the call was not made): the next model in the chain; not a failure.
- retryable (5xx, 529, timeouts, connection errors) after every try, or a malformed response:
  the next model; at the end of the chain, the same model again, until ``max_attempts``
  dispatches have failed.
- unavailable (auth failure, exhausted quota): the next model; at the end, failed (waiting does
  not fix a key or a quota; the breaker already keeps other requests away).
- context window exceeded: the next model in the chain with a larger window; none, failed.
- anything else (a 4xx the provider rejected, a bug): failed at once with the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.broker_toml import BrokerConfig
from broker.errors import (
    CircuitOpen,
    ContextWindowExceeded,
    MalformedResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from broker.store.transitions import HandBack


@dataclass(frozen=True, slots=True)
class Fail:
    code: str
    message: str


def after_error(
    config: BrokerConfig, requested: str, tried: str, error: Exception, failures: int
) -> HandBack | Fail:
    """The decision for a request that asked for ``requested`` and failed on ``tried`` with
    ``error``, having failed ``failures`` dispatches before this one."""
    if not isinstance(error, ProviderError):
        return Fail("internal_error", f"internal error: {type(error).__name__}")
    if isinstance(error, ProviderRejected):
        return Fail(error.code, str(error))  # the request itself is wrong: no retry helps
    if not config.has_model(requested):
        message = f"model {requested!r} is no longer in the catalog (last error: {error})"
        return Fail("unknown_model", message)
    chain = config.model(requested).chain
    here = chain.index(tried) if tried in chain else 0  # a model the chain lost: its head
    following = here + 1 if here + 1 < len(chain) else None
    if isinstance(error, ProviderRateLimited):
        return HandBack(here, failed=False)
    if isinstance(error, CircuitOpen):
        return HandBack(following if following is not None else here, failed=False)
    if failures + 1 >= config.scheduler.max_attempts:
        return Fail(error.code, f"{error} ({failures + 1} failed attempts, giving up)")
    if isinstance(error, ProviderRetryable | MalformedResponse):
        return HandBack(following if following is not None else here, failed=True)
    if isinstance(error, ProviderUnavailable) and following is not None:
        return HandBack(following, failed=True)
    if isinstance(error, ContextWindowExceeded):
        window = config.model(tried).context_window
        for index in range(here + 1, len(chain)):
            if config.model(chain[index]).context_window > window:
                return HandBack(index, failed=True)
    return Fail(error.code, str(error))
