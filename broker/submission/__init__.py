"""Submission: a batch as a caller sends it, checked, admitted and written as a job's rows and
queue entries in one transaction (or refused, leaving nothing).

- :mod:`~broker.submission.submitter`: the :class:`Submitter` (validate against the catalog,
  choose each request's model, write rows and queue entries), :class:`Stream` for a batch read
  from an uploaded file, and :data:`INSERT_SLICE`;
- :mod:`~broker.submission.payloads`: pure functions of a request: its stored payload
  (:func:`payload_of`), the parameters its model cannot honour (:func:`unhonoured`), its tokens
  for the rate limit (:func:`tokens_of`), and the webhook URL's SSRF check
  (:func:`check_webhook_url`);
- :mod:`~broker.submission.admission`: the 429s, submission rate limits and the ``reject``
  budget policy;
- :mod:`~broker.submission.known_answers`: cache tokens, and the requests the response cache
  answers at once, written as hits.

The names other modules use are imported here, so ``from broker.submission import ...`` needs
no module name.
"""

from broker.submission.payloads import check_webhook_url, payload_of, tokens_of, unhonoured
from broker.submission.submitter import INSERT_SLICE, Stream, Submitter

__all__ = [
    "INSERT_SLICE",
    "Stream",
    "Submitter",
    "check_webhook_url",
    "payload_of",
    "tokens_of",
    "unhonoured",
]
