"""A labelled corpus for the redactor, generated from a seed: every value made here, none copied.

Each sample is a short piece of agent-like text (a log line, a config snippet, a support note)
with PII and secrets planted at known offsets, and decoys that look like them but are not
(a 16-digit order number that fails Luhn, a commit SHA, a UUID, ``sk-learn``, a placeholder
token): the decoys are what precision is measured on. Values are random, so a value that
survives redaction can be found in the output by plain search (the canary tests do that).

``score`` compares an engine's spans with the planted ones: recall per planted kind is the share
of planted values wholly covered by the engine's spans (of any type: redacted is redacted);
precision per reported type is the share of the engine's spans that overlap a planted value.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["KINDS", "NER_KINDS", "Planted", "Sample", "generate", "score"]

_ALNUM = string.ascii_letters + string.digits
_URLSAFE = _ALNUM + "-_"
_FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Grace", "Hiroshi", "Ingrid",
          "Jamal", "Katarzyna", "Luis", "Mei", "Nadia", "Oskar", "Priya"]
_LAST = ["Johnson", "Rossi", "Ivanova", "Okafor", "Lindqvist", "Haddad", "Tanaka", "Moreau",
         "Kowalski", "Fernandes", "Nguyen", "Schmidt", "Patel", "Andersen", "Garcia", "Novak"]
_DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "example.io", "example.de",
            "support.example.net"]


@dataclass(frozen=True)
class Planted:
    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Sample:
    text: str
    planted: tuple[Planted, ...]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _rand(rng, string.digits, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("34", 15), ("37", 15)])
    digits = _luhn_complete(rng, prefix, length)
    sep = rng.choice(["", " ", "-"])
    groups = ([digits[:4], digits[4:10], digits[10:]] if length == 15
              else [digits[i:i + 4] for i in range(0, 16, 4)])
    return sep.join(groups)


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice([
        ("GB", lambda: _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 14)),
        ("DE", lambda: _rand(rng, string.digits, 18)),
        ("FR", lambda: _rand(rng, string.digits, 23)),
        ("NL", lambda: _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 10)),
    ])
    body = bban()
    numeric = "".join(str(int(c, 36)) for c in body + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{body}"
    return iban if rng.random() < 0.5 else " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def _phone(rng: random.Random) -> str:
    area = rng.choice(["212", "415", "312", "617", "206", "303", "512", "646"])
    exch, line = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}", _rand(
        rng, string.digits, 4)
    return rng.choice([f"({area}) {exch}-{line}", f"{area}-{exch}-{line}",
                       f"+1 {area} {exch} {line}", f"+44 20 7{_rand(rng, string.digits, 3)} "
                       f"{_rand(rng, string.digits, 4)}"])


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return "2001:db8:" + ":".join(f"{rng.randint(0, 65535):x}" for _ in range(6))


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random) -> str:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": _rand(rng, string.digits, 8),
                               "iat": rng.randint(1_600_000_000, 1_800_000_000)}).encode())
    return f"{head}.{body}.{_b64url(rng.randbytes(32))}"


def _pem(rng: random.Random) -> str:
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                        "OPENSSH PRIVATE KEY"])
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(3, 8))]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def _secret_value(rng: random.Random) -> str:
    return _rand(rng, _ALNUM + "+/", rng.randint(24, 44))


# kind -> (value maker, templates with {v}); a template may hold its own context around {v}.
_MAKERS: dict[str, tuple[Callable[[random.Random], str], list[str]]] = {
    "EMAIL_ADDRESS": (lambda r: f"{r.choice(_FIRST).lower()}.{r.choice(_LAST).lower()}"
                                f"{r.randint(1, 99)}@{r.choice(_DOMAINS)}",
                      ["contact {v} about the refund", "From: {v}", "cc {v};"]),
    "PHONE_NUMBER": (_phone, ["call me on {v} after 5pm", "Phone: {v}", "tel {v}"]),
    "CREDIT_CARD": (_card, ["card number {v} exp 09/29", "paid with {v}", "PAN={v}"]),
    "IBAN_CODE": (_iban, ["wire it to {v} please", "IBAN: {v}", "account {v}"]),
    "IP_ADDRESS": (_ip, ["login from {v} failed", "client_ip={v}", "peer {v} reset"]),
    "US_SSN": (_ssn, ["SSN {v} on file", "social security number: {v}", "ssn={v}"]),
    "PERSON": (lambda r: f"{r.choice(_FIRST)} {r.choice(_LAST)}",
               ["ticket opened by {v} yesterday", "Dear {v},", "assignee: {v}"]),
    "OPENAI_API_KEY": (lambda r: r.choice(["sk-proj-", "sk-"]) + _rand(r, _URLSAFE, 64),
                       ["OPENAI_API_KEY={v}", "using key {v} for the call", "'{v}'"]),
    "ANTHROPIC_API_KEY": (lambda r: "sk-ant-api03-" + _rand(r, _URLSAFE, 93) + "AA",
                          ["x-api-key: {v}", "ANTHROPIC_API_KEY={v}", "key {v} revoked"]),
    "AWS_ACCESS_KEY": (lambda r: r.choice(["AKIA", "ASIA"]) + _rand(
        r, string.ascii_uppercase + "234567", 16),
                       ["aws_access_key_id = {v}", "AccessKeyId: {v}", "creds {v}"]),
    "GITHUB_TOKEN": (lambda r: r.choice(["ghp_", "gho_", "ghs_"]) + _rand(r, _ALNUM, 36)
                     if r.random() < 0.7 else "github_pat_" + _rand(r, _ALNUM, 22) + "_"
                     + _rand(r, _ALNUM, 59),
                     ["GITHUB_TOKEN={v}", "git clone with {v}", "token {v} expired"]),
    "JWT": (_jwt, ["session={v}", "the id_token was {v}", "cookie: jwt={v}"]),
    "PRIVATE_KEY": (_pem, ["key file:\n{v}\n", "ssh key {v} pasted", "{v}"]),
    "BEARER_TOKEN": (lambda r: _rand(r, _URLSAFE, r.randint(24, 48)),
                     ["Authorization: Bearer {v}", "curl -H 'Authorization: Bearer {v}'"]),
    "URL_PASSWORD": (lambda r: _rand(r, _ALNUM + "!*", r.randint(8, 20)),
                     ["postgres://app:{v}@db.internal:5432/app", "https://bot:{v}@git.example.com/x"]),
    "SECRET": (_secret_value, ["api_key = \"{v}\"", "client_secret: {v}", "token={v}",
                               "password={v}", "AWS_SECRET_ACCESS_KEY={v}"]),
}
KINDS: tuple[str, ...] = tuple(_MAKERS)
NER_KINDS = frozenset({"PERSON"})  # needs a named-entity model; pattern engines are not expected

_DECOYS: list[Callable[[random.Random], str]] = [
    lambda r: f"order {_rand(r, string.digits, 16)} shipped",  # fails Luhn 9 times in 10
    lambda r: f"commit {_rand(r, '0123456789abcdef', 40)} merged",
    lambda r: f"request id {r.randbytes(16).hex()}",
    lambda r: f"scikit-learn (sk-learn) {r.randint(1, 2)}.{r.randint(0, 9)}.{r.randint(0, 9)}",
    lambda r: "token=placeholder password=changeme",
    lambda r: f"at 2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T10:00:00Z port 8080",
    lambda r: f"build {r.randint(20200101, 20261231)} took {r.randint(1, 99)} s",
    lambda r: f"total $ {r.randint(1, 9999)}.{r.randint(0, 99):02d} for {r.randint(1, 9)} items",
]


def _sample(rng: random.Random, kinds: list[str]) -> Sample:
    parts: list[str] = []
    planted: list[Planted] = []
    pos = 0
    for kind in kinds:
        for text in (rng.choice(_DECOYS)(rng), None):
            if text is None:
                maker, templates = _MAKERS[kind]
                value = maker(rng)
                before, after = rng.choice(templates).split("{v}")
                start = pos + len(before)
                planted.append(Planted(kind, value, start, start + len(value)))
                text = before + value + after
            parts.append(text)
            pos += len(text) + 2
    return Sample(". ".join(parts), tuple(planted))


def generate(n: int, seed: int = 10, kinds: Iterable[str] = KINDS) -> list[Sample]:
    """``n`` samples, each planting one to three kinds drawn round-robin from ``kinds``."""
    rng, pool = random.Random(seed), list(kinds)
    out: list[Sample] = []
    for i in range(n):
        count = rng.randint(1, 3)
        out.append(_sample(rng, [pool[(i + j) % len(pool)] for j in range(count)]))
    return out


Spans = list[tuple[str, int, int]]


def score(samples: list[Sample], detect: Callable[[str], Spans]) -> dict[str, dict[str, float]]:
    """Recall per planted kind and precision per reported type (module docstring)."""
    hit: dict[str, list[int]] = {}
    reported: dict[str, list[int]] = {}
    for sample in samples:
        spans = detect(sample.text)
        covered = bytearray(len(sample.text))
        for _, s, e in spans:
            covered[s:e] = b"\x01" * (e - s)
        for p in sample.planted:
            h = hit.setdefault(p.kind, [0, 0])
            h[0] += all(covered[p.start:p.end])
            h[1] += 1
        for kind, s, e in spans:
            r = reported.setdefault(kind, [0, 0])
            r[0] += any(p.start < e and s < p.end for p in sample.planted)
            r[1] += 1
    return {"recall": {k: v[0] / v[1] for k, v in sorted(hit.items())},
            "precision": {k: v[0] / v[1] for k, v in sorted(reported.items())},
            "planted": {k: v[1] for k, v in sorted(hit.items())},
            "reported": {k: v[1] for k, v in sorted(reported.items())}}
