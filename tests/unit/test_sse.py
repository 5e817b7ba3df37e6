"""Usage is read from a relayed event stream; the stream the agent sees is the one it asked for."""

from __future__ import annotations

import json

import pytest

from tether_sidecar.sse import SseUsage
from tether_sidecar.upstream import TransportError


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
        ("message_stop", {"type": "message_stop"}),
    ]
    raw = b"".join(f"event: {n}\ndata: {json.dumps(d)}\n\n".encode() for n, d in events)
    parser = SseUsage("anthropic", strip_usage_chunk=False)
    assert run(parser, [raw]) == raw
    assert (parser.input_tokens, parser.output_tokens, parser.cache_read) == (50, 7, 10)


def test_incomplete_stream_has_no_usage() -> None:
    parser = SseUsage("openai", strip_usage_chunk=False)
    run(parser, openai_stream(False))
    assert not parser.complete


@pytest.mark.parametrize("strip", [False, True])
def test_a_stream_that_ends_before_done_is_broken_not_whole(strip: bool) -> None:
    # A proxy's idle timeout or a restarting server can end the body cleanly mid-answer: the
    # agent would take half an answer for the whole one.
    pieces = openai_stream(True)
    cut = b"".join(pieces).replace(b"data: [DONE]\n\n", b"")
    parser = SseUsage("openai", strip_usage_chunk=strip)
    with pytest.raises(TransportError, match=r"data: \[DONE\]") as caught:
        run(parser, [cut])
    assert caught.value.reached


def test_an_anthropic_stream_without_message_stop_is_broken() -> None:
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
           b'{"input_tokens":5,"output_tokens":1}}}\n\n')
    with pytest.raises(TransportError, match="message_stop"):
        run(SseUsage("anthropic", strip_usage_chunk=False), [raw])


def test_done_as_the_last_bytes_without_a_blank_line_still_ends_the_stream() -> None:
    parser = SseUsage("openai", strip_usage_chunk=False)
    run(parser, [b"data: {\"choices\": []}\n\ndata: [DONE]"])
    assert parser.ended
