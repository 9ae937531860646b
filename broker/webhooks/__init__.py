"""Job webhooks: what the sender (``workers.webhooks``) and the client's ``verify_webhook``
share: the signature scheme (:mod:`.signing`), and the SSRF guard the API and the sender apply
to receiver URLs (:mod:`.ssrf`)."""
