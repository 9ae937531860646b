"""Redacting personal data from prompts and log lines: e-mail addresses, phone numbers and
payment card numbers become ``[email]``, ``[phone]`` and ``[card]``.

Off by default; ``BROKER_REDACT=true`` turns it on for prompts (:mod:`broker.submission`) and for
every log record (:class:`broker.telemetry.logs.RedactionFilter`).

**What is stored is what is sent.** With redaction on, the API redacts each message's content
before the request row is written, and the worker sends the provider the stored payload: the
original prompt is kept nowhere. Sending the original while storing a redacted copy would mean
keeping the original somewhere the worker can read it (the database, Redis or the Celery
message), which is the very thing redaction is for; a team that needs the provider to see the
data must not turn it on.

The patterns are conservative, preferring to miss an odd format over mangling text:

- card numbers: 13 to 19 digits, contiguous or in groups split by single spaces or dashes,
  starting with 2 to 6 (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay), and passing
  the Luhn check, so an order number of the same length is left alone (one in ten random
  numbers passes Luhn: those are redacted too);
- phone numbers, 9 to 15 digits: ``+`` and a country code with any spacing (E.164 and its
  written forms), North American ``(415) 555-2671`` / ``415-555-2671`` / ``415.555.2671``, and
  national numbers with a trunk ``0`` in groups split by one separator (``020 7946 0958``,
  ``01 23 45 67 89``). Bare digit runs without a ``+`` are left alone (order numbers, ids), and
  so are dates, times and prices;
- e-mail addresses: ``local@domain.tld``.
"""

from __future__ import annotations

import re

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Runs of digit groups split by single spaces or dashes; the card check picks inside them.
_DIGIT_RUN = re.compile(r"(?<![\w.+])\d+(?:[ -]\d+)*(?![\w])")
_GROUP = re.compile(r"\d+")

_PHONE = re.compile(
    r"""
    (?<![\w.+-])
    (?:
        \+\d(?:[ .\-()]{0,2}\d){8,14}                             # +country code, any spacing
      | (?:1[ .-])?(?:\(\d{3}\)\ ?|\d{3}[ .-])\d{3}[ .-]\d{4}  # North American
      | 0\d{1,4}(?P<sep>[ .-])\d{2,4}(?:(?P=sep)\d{2,4}){0,3}     # national, trunk 0
    )
    (?![\w]|[.-]\d)
    """,
    re.VERBOSE,
)


def redact(text: str) -> str:
    """``text`` with e-mail addresses, card numbers and phone numbers replaced."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL, text)
    text = _DIGIT_RUN.sub(_cards_in_run, text)
    return _PHONE.sub(_phone, text)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _cards_in_run(match: re.Match[str]) -> str:
    """Replace, left to right, the longest span of whole groups in the run that is a card."""
    run = match.group()
    groups = list(_GROUP.finditer(run))
    if sum(len(g.group()) for g in groups) < 13:
        return run
    out, pos, i = [], 0, 0
    while i < len(groups):
        digits, best = "", None
        for j in range(i, len(groups)):
            digits += groups[j].group()
            if len(digits) > 19:
                break
            if _is_card(digits):
                best = j
        if best is None:
            i += 1
            continue
        out += [run[pos : groups[i].start()], CARD]
        pos = groups[best].end()
        i = best + 1
    out.append(run[pos:])
    return "".join(out)


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group())
    return PHONE if 9 <= digits <= 15 else match.group()
