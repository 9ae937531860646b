"""Personal data out of prompts and logs: what is replaced, and what is left alone."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from broker.config.broker_toml import load_config
from broker.schemas.http import JobCreate
from broker.store import Request
from broker.submission import Submitter
from broker.telemetry.redaction import luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+billing@example.co.uk today", "write to [email] today"),
        ("cc: ops@mail.example.com, a_b@x.io", "cc: [email], [email]"),
    ],
)
def test_email_addresses(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "phone",
    [
        "+14155552671",  # E.164
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+49 30 12345678",
        "+91-98765-43210",
        "+86 138 0013 8000",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-1234",
        "020 7946 0958",
        "01 23 45 67 89",
    ],
)
def test_phone_numbers(phone):
    assert redact(f"call {phone} after six") == "call [phone] after six"


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa
        "4111-1111-1111-1111",
        "4012888888881881",
        "5555 5555 5555 4444",  # Mastercard
        "5105-1051-0510-5100",
        "2223003122003222",  # Mastercard 2-series
        "3782 822463 10005",  # Amex, 4-6-5
        "371449635398431",
        "6011 1111 1111 1117",  # Discover
    ],
)
def test_card_numbers_that_pass_luhn(card):
    assert luhn_ok(card.replace(" ", "").replace("-", ""))
    assert redact(f"my card is {card}, exp 12/27") == "my card is [card], exp 12/27"


def test_a_card_next_to_another_number_is_still_found():
    assert redact("4111111111111111 12") == "[card] 12"
    assert redact("4111 1111 1111 1111 2024") == "[card] 2024"


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # 16 digits failing Luhn
        "order 4111111111111112",
        "order 1234567890123456",
        "invoice 9876543210",  # a bare run of digits: not a phone without a +
        "on 2026-11-22 at 10:30:00",
        "on 2026-11-22 10:30",
        "due 22.11.2026 or 11/22/2026",
        "costs $1,299.00 or 1 299,00 € or 1.299.000 ¥",
        "request req_3fa9c2_12 of job_0123456789abcdef01234567",
        "version 1.2.3, port 8140, 42 tokens, 128000 context",
        "ORD-123-456-7890",
    ],
)
def test_dates_prices_ids_and_order_numbers_are_left_alone(text):
    assert redact(text) == text


def test_everything_in_one_text():
    text = "Jane (jane@example.com, +44 20 7946 0958) paid 49.99 with 5555 5555 5555 4444."
    assert redact(text) == "Jane ([email], [phone]) paid 49.99 with [card]."


def test_empty_text():
    assert redact("") == ""


def _batch(content: str) -> JobCreate:
    return JobCreate(
        feature="chatbot",
        requests=[
            {
                "custom_id": "r1",
                "model": "gpt-4o-mini",
                "max_tokens": 8,
                "messages": [
                    {"role": "system", "content": "Support desk."},
                    {"role": "user", "content": content},
                ],
            }
        ],
    )


@pytest.mark.parametrize("redact_on", [True, False])
def test_submission_stores_redacted_prompts_only_when_on(redact_on, db, redis_client):
    config = load_config()
    content = "I am jane@example.com, card 4111 1111 1111 1111, call +1 415 555 2671"
    submitter = Submitter(db, redis_client, config, redact=redact_on)
    job = submitter.submit(config.team("product"), _batch(content))
    with db.session() as s:
        payload = s.scalar(select(Request.payload).where(Request.job_id == job.id))
    stored = payload["messages"][1]["content"]
    if redact_on:
        assert stored == "I am [email], card [card], call [phone]"
    else:
        assert stored == content
    assert payload["messages"][0] == {"role": "system", "content": "Support desk."}
