"""Content-Encoding of upstream responses: gzip and deflate undone here, anything else refused.

The transport asks for ``gzip, deflate`` and decodes itself (aiohttp's ``auto_decompress`` is
off) because aiohttp passes an encoding it does not know through still encoded, and accepts a
gzip body cut short as complete: both would reach the JSON parser, or the agent, as a success.
Here a truncated or corrupt body, or a coding we did not ask for, is a :class:`BodyError`
(the transport maps it to its ``TransportError``), and the decoded size counts against the
response cap (a small compressed body can inflate to gigabytes).
"""

from __future__ import annotations

import zlib

__all__ = ["ACCEPT_ENCODING", "BodyError", "Decoder", "decoder_for", "too_large"]

ACCEPT_ENCODING = "gzip, deflate"
# RFC 9110 §8.4.1: "deflate" is the zlib format (wbits 15); gzip has its own header (wbits 31).
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


class BodyError(Exception):
    """A response body that cannot be handed on. ``kind``: ``connection`` (corrupt, cut short,
    an unknown coding: retryable, as a broken connection is) or ``too_large`` (not retried)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def too_large(origin: str, limit: int, what: str = "") -> BodyError:
    return BodyError("too_large", f"the response body from {origin}{what} is over {limit} "
                     "bytes (TETHER_SIDECAR_MAX_RESPONSE_BYTES); it was not read further")


def _broken(reason: str) -> BodyError:
    return BodyError("connection", reason)


class Decoder:
    """Feeds encoded pieces, returns decoded ones; at most ``limit`` bytes out in all."""

    def __init__(self, coding: str, wbits: int, limit: int, origin: str) -> None:
        self.coding, self._wbits, self._limit, self._origin = coding, wbits, limit, origin
        self._z = zlib.decompressobj(wbits)
        self._fed = False
        self._out = 0

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if not self._fed and self._wbits == 15 and data[0] & 0x0F != 8:
            # Raw deflate without the zlib header: what some servers send for "deflate".
            self._wbits = -15
            self._z = zlib.decompressobj(self._wbits)
        self._fed = True
        try:
            out = self._z.decompress(data, self._limit - self._out + 1)
            while self._z.eof and self._z.unused_data:  # more gzip members (RFC 1952 §2.2)
                rest, self._z = self._z.unused_data, zlib.decompressobj(self._wbits)
                out += self._z.decompress(rest, self._limit - self._out - len(out) + 1)
        except zlib.error as exc:
            raise _broken(f"cannot decode the {self.coding} body from {self._origin}: "
                          f"{exc}") from exc
        self._out += len(out)
        if self._out > self._limit:
            raise too_large(self._origin, self._limit, f" ({self.coding}, decoded)")
        return out

    def finish(self) -> bytes:
        if self._fed and not self._z.eof:  # an empty body (204, 304, HEAD) is fine
            raise _broken(f"the {self.coding} body from {self._origin} ends early")
        return b""


def decoder_for(coding: str | None, limit: int, origin: str) -> Decoder | None:
    """The decoder for a ``Content-Encoding`` value, None for none; raises for what we
    cannot decode."""
    if coding is None:
        return None
    name = coding.strip().lower()
    if name in ("", "identity"):
        return None
    wbits = _WBITS.get(name)
    if wbits is None:
        raise _broken(f"{origin} sent content-encoding {coding!r}, which the sidecar did not "
                      f"ask for and cannot decode (it accepts {ACCEPT_ENCODING})")
    return Decoder(name, wbits, limit, origin)
