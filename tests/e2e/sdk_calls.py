"""The SDK calls a team's existing code makes, run in a subprocess against a stack with
whatever ``openai`` and ``anthropic`` versions are on its path (the oldest we support, in
tests/e2e/test_dropin_chat.py). Exits non-zero on the first call that fails."""

from __future__ import annotations

import sys
import uuid

import anthropic
import openai


def main(api_url: str, key: str) -> None:
    tag = uuid.uuid4().hex[:8]
    oa = openai.OpenAI(
        base_url=f"{api_url}/v1", api_key=key, max_retries=0, _strict_response_validation=True
    )
    ask = [{"role": "user", "content": f"Old SDK, new broker? {tag}"}]
    done = oa.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=30)
    assert done.choices[0].message.content, done
    chunks = list(
        oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=ask,
            max_tokens=30,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content and chunks[-1].usage is not None
    cut = oa.chat.completions.create(
        model="gpt-4o-mini", messages=ask, max_tokens=30, stop=["."], top_p=0.5
    )
    assert cut.choices[0].finish_reason == "stop", cut
    assert done.choices[0].message.content.startswith(cut.choices[0].message.content), cut
    seeded = oa.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=30, seed=1)
    assert seeded.choices[0].message.content, seeded
    assert "auto" in {m.id for m in oa.models.list()}
    vectors = oa.embeddings.create(
        model="text-embedding-3-small", input=[f"old {tag}", "sdk"], encoding_format="float"
    )
    assert [len(d.embedding) for d in vectors.data] == [1536, 1536], vectors.usage

    an = anthropic.Anthropic(
        base_url=api_url, api_key=key, max_retries=0, _strict_response_validation=True
    )
    msg = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=30,
        messages=[{"role": "user", "content": f"Hello from an old SDK {tag}"}],
    )
    assert msg.content[0].text, msg
    stopped = an.messages.create(
        model="claude-haiku-4-5",
        max_tokens=30,
        messages=[{"role": "user", "content": f"Hello from an old SDK {tag}"}],
        stop_sequences=["."],
        top_k=5,
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "."), stopped
    with an.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=30,
        messages=[{"role": "user", "content": f"Stream to an old SDK {tag}"}],
    ) as stream:
        assert "".join(stream.text_stream) == stream.get_final_message().content[0].text
    # Before 0.50 the SDK takes the input tokens from message_start only: a live answer's
    # start carries what its (Anthropic-format) provider reported at its own start.
    assert stream.get_final_message().usage.input_tokens > 0, stream.get_final_message()
    print(f"ok openai {openai.__version__} anthropic {anthropic.__version__}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
