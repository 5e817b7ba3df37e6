"""Usage is read from a relayed event stream; the stream the agent sees is the one it asked for."""

from __future__ import annotations

import json

from tether_sidecar.sse import SseUsage


def openai_stream(with_usage: bool) -> list[bytes]:
    chunks = [{"choices": [{"delta": {"content": "Hel"}}], "usage": None},
              {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}],
               "usage": None}]
    if with_usage:
        chunks.append({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 2}})
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
    raw = b"".join(events)
    return [raw[i:i + 7] for i in range(0, len(raw), 7)]  # split mid-event on purpose


def run(parser: SseUsage, pieces: list[bytes]) -> bytes:
    return b"".join(parser.feed(p) for p in pieces) + parser.flush()


def test_usage_read_and_stream_unchanged_when_the_agent_asked_for_it() -> None:
    pieces = openai_stream(True)
    parser = SseUsage("openai", strip_usage_chunk=False)
    assert run(parser, pieces) == b"".join(pieces)
    assert (parser.input_tokens, parser.output_tokens) == (11, 2)


def test_usage_chunk_held_back_when_the_sidecar_asked_for_it() -> None:
    parser = SseUsage("openai", strip_usage_chunk=True)
    out = run(parser, openai_stream(True))
    assert b'"prompt_tokens"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert out.count(b"data: ") == 3
    assert parser.complete


def test_anthropic_usage_from_start_and_delta() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {
            "model": "claude", "usage": {"input_tokens": 40, "output_tokens": 1,
                                         "cache_read_input_tokens": 10}}}),
        ("content_block_delta", {"type": "content_block_delta",
                                 "delta": {"type": "text_delta", "text": "hi"}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
    ]
    raw = b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)
    parser = SseUsage("anthropic", strip_usage_chunk=False)
    assert run(parser, [raw]) == raw
    assert (parser.input_tokens, parser.output_tokens, parser.cache_read) == (50, 7, 10)


def test_incomplete_stream_has_no_usage() -> None:
    parser = SseUsage("openai", strip_usage_chunk=False)
    run(parser, openai_stream(False))
    assert not parser.complete
