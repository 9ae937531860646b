"""The demo's second half: the official OpenAI and Anthropic SDKs against the running stack,
changed only in ``base_url`` and the key, as a team's existing code would call it.

The SDKs come with the ``test`` extra (the quickstart installs it); without them this part says
how to get them and the demo goes on.
"""

from __future__ import annotations

import uuid

from rich.console import Console
from rich.table import Table

SDK_TEAM_KEY = "ib-dev-product"


def run_sdk_demo(api_url: str, console: Console) -> None:
    try:
        import anthropic  # noqa: PLC0415  (optional: the test extra)
        import openai  # noqa: PLC0415
    except ImportError:
        console.print("[yellow]the OpenAI/Anthropic SDKs are not installed[/]: pip install "
                      "'inference-broker[test]' to see them work against the broker")
        return
    tag = uuid.uuid4().hex[:6]
    table = Table(title="The official SDKs, unchanged, through the broker's queues")
    for column in ("SDK call", "model", "answer (start)", "request"):
        table.add_column(column)
    oa = openai.OpenAI(
        base_url=f"{api_url}/v1",
        api_key=SDK_TEAM_KEY,
        default_headers={"x-broker-feature": "chatbot"},
    )
    ask = [{"role": "user", "content": f"What are your opening hours? ({tag})"}]
    raw = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask, max_tokens=60
    )
    done = raw.parse()
    table.add_row(
        "openai chat.completions.create",
        done.model,
        (done.choices[0].message.content or "")[:40],
        raw.headers["x-request-id"],
    )
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in oa.chat.completions.create(
            model="gpt-4o-mini", messages=ask, max_tokens=60, stream=True
        )
        if chunk.choices
    )
    table.add_row("openai ... stream=True (the repeat: a cache hit)", done.model, streamed[:40], "")
    an = anthropic.Anthropic(
        base_url=api_url,
        api_key=SDK_TEAM_KEY,
        default_headers={"x-broker-feature": "search"},
    )
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=60,
        messages=[{"role": "user", "content": f"Keywords for: refund policy ({tag})"}],
    ) as stream:
        message = stream.get_final_message()
    table.add_row(
        "anthropic messages.stream",
        message.model,
        message.content[0].text[:40],
        message.model_extra.get("x_broker", {}).get("request_id", ""),
    )
    console.print(table)
