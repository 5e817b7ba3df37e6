r"""Our secret patterns, as plain data: the redactor makes Presidio ``PatternRecognizer``s of them.

Presidio's recognizers know PII (e-mail, phone, card, IBAN, IP, SSN) but not credentials, so
these add API keys and tokens. They are data here, not recognizers, so that importing this
module costs nothing (the engine is imported only when a record is redacted).

Every pattern is written to stay linear in its input: no nested quantifiers, every repeat
bounded or over a character class disjoint from what follows it. The redactor's deadline is the
backstop, not the plan. ``\K`` (the ``regex`` module's "keep out", which Presidio runs them
with) starts the reported match after the key name, ``Bearer`` or the URL's user, so only the
value is redacted and a judge still sees what it was for; measured 10 to 300 times cheaper than
the same context as a variable-length look-behind, which is tried at every position.
Our own ``<TYPE>`` markers never match (the evaluator redacts again what a sidecar redacted).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENTROPY_CHECKED", "SECRET_PATTERNS", "SecretPattern"]


@dataclass(frozen=True)
class SecretPattern:
    entity: str
    name: str
    regex: str


# Order matters on a tie: of two equally long overlapping spans the earlier entity names it.
SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern("PRIVATE_KEY", "PEM private key block",
                  r"-----BEGIN [A-Z0-9 ]{0,30}PRIVATE KEY-----[A-Za-z0-9+/=\s]{0,65536}"
                  r"(?:-----END [A-Z0-9 ]{0,30}PRIVATE KEY-----)?"),
    SecretPattern("ANTHROPIC_API_KEY", "Anthropic key",
                  r"\bsk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_-]{20,512}"),
    SecretPattern("OPENAI_API_KEY", "OpenAI key",
                  r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,512}"),
    SecretPattern("AWS_ACCESS_KEY", "AWS access key id",
                  r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"),
    SecretPattern("GITHUB_TOKEN", "GitHub token",
                  r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    SecretPattern("JWT", "JSON Web Token",
                  r"\beyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{0,1024}"),
    SecretPattern("BEARER_TOKEN", "Bearer credential",
                  r"(?i)\bbearer[ \t]{1,8}\K[A-Za-z0-9._~+/-]{12,4096}=*"),
    SecretPattern("URL_PASSWORD", "password in a URL's user info",
                  r"(?i)\b[a-z][a-z0-9+.-]{0,20}://[^\s:/@]{1,128}:\K(?!<[A-Z_]{1,40}>@)"
                  r"[^\s@/]{1,256}(?=@)"),
    SecretPattern("SECRET", "value assigned to a key, token, secret or password",
                  r"(?i)(?:key|secret|token|password|passwd|pwd)[\"']?[ \t]{0,4}[:=]"
                  r"[ \t]{0,4}[\"']?\K[A-Za-z0-9+/=_.~!*-]{12,512}"),
)

# Entities whose matches must also look random (Shannon entropy per character) to count:
# ``token=placeholder`` or ``password=<redacted>`` are not secrets.
ENTROPY_CHECKED: dict[str, float] = {"SECRET": 3.0}
