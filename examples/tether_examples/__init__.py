"""Test doubles and helpers for exercising tether, or an agent, offline on loopback.

What it is: small, deterministic stand-ins for the outside world that tether's sidecar talks
to — `scripted_model` (an LLM provider speaking the OpenAI and Anthropic wire formats, playing a
YAML script) and `fault_tools` (an HTTP tool server that fails in named, repeatable ways) — plus
`_serve`, which runs an aiohttp app on a free 127.0.0.1 port for tests.

What it is not: a model, a mock of every provider feature, or anything to deploy. The doubles
check no credentials, enforce no limits and implement only as much of each API as the official
SDKs need to parse their answers. Production code must not import this package.
"""
