"""Outbound proxies from the environment: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``.

Read once, at start-up, from the conventional variables (lower case wins over upper case, as in
curl and Python's ``urllib``). Why not aiohttp's ``trust_env=True``: it re-reads the environment
and ``~/.netrc`` in a worker thread on *every* request (two thread hops per call), and it sends
netrc credentials nobody configured for the sidecar. The rules below are the common ground of
curl, Go and ``urllib``:

* ``http://`` URLs go through ``HTTP_PROXY`` as a forward proxy (absolute-form request);
  ``https://`` URLs through ``HTTPS_PROXY`` with a ``CONNECT`` tunnel, TLS end to end.
* ``NO_PROXY`` is a comma- or space-separated list: ``*`` (no proxy at all), a host name that
  matches itself and its subdomains (a leading dot is optional), ``host:port`` for one port
  only, an IP address, or a CIDR block (``10.0.0.0/8``, as Kubernetes clusters set it) that
  matches IP-literal hosts.
* User and password in a proxy URL become ``Proxy-Authorization: Basic`` to the proxy only.

It does not do PAC files, SOCKS, or per-scheme variables other than these two.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from yarl import URL

__all__ = ["Proxies", "ProxyConfigError", "Route"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyConfigError(ValueError):
    """A proxy variable that cannot work; the message names it."""


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one origin: through ``proxy`` (with these headers for it), or directly."""

    proxy: URL | None = None
    proxy_headers: Mapping[str, str] | None = None


DIRECT = Route()


def _var(environ: Mapping[str, str], name: str) -> tuple[str, str]:
    for key in (name, name.upper()):
        value = environ.get(key, "").strip()
        if value:
            return key, value
    return name.upper(), ""


def _route(key: str, value: str) -> Route:
    if "://" not in value:  # "proxy:3128" means http, as curl reads it
        value = "http://" + value
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ProxyConfigError(f"{key}={value!r}: not an http:// or https:// proxy URL with a "
                               "host (SOCKS and other schemes are not supported)")
    headers = None
    if url.user is not None:  # RFC 7617, UTF-8 as its charset parameter allows
        token = base64.b64encode(f"{url.user}:{url.password or ''}".encode()).decode("ascii")
        headers = {"Proxy-Authorization": f"Basic {token}"}
    return Route(url.with_user(None).with_password(None), headers)


@dataclass(frozen=True)
class Proxies:
    """Where each scheme's proxy is, and the NO_PROXY exceptions."""

    http: Route = DIRECT
    https: Route = DIRECT
    bypass_all: bool = False
    names: tuple[str, ...] = ()  # host suffixes, lower case, no leading dot
    name_ports: tuple[tuple[str, int], ...] = ()
    networks: tuple[_Net, ...] = field(default=())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Proxies:
        """Raises :class:`ProxyConfigError` naming the variable when a value cannot work."""
        http_key, http = _var(environ, "http_proxy")
        https_key, https = _var(environ, "https_proxy")
        no_key, no = _var(environ, "no_proxy")
        names: list[str] = []
        name_ports: list[tuple[str, int]] = []
        networks: list[_Net] = []
        entries = [e for e in no.replace(",", " ").split() if e]
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass  # not an address or block: a name, perhaps with a port
            host, sep, port = entry.rpartition(":")
            if sep and port.isdigit() and "]" not in port:
                name_ports.append((host.strip("[]").lstrip(".").lower(), int(port)))
            elif sep and not port.isdigit():
                raise ProxyConfigError(f"{no_key}: cannot read entry {entry!r} (expected a "
                                       "host name, host:port, an IP address or a CIDR block)")
            else:
                names.append(entry.lstrip(".").lower())
        return cls(http=_route(http_key, http) if http else DIRECT,
                   https=_route(https_key, https) if https else DIRECT,
                   bypass_all="*" in entries, names=tuple(names),
                   name_ports=tuple(name_ports), networks=tuple(networks))

    def route(self, url: URL) -> Route:
        """The route for ``url``'s origin (callers cache it per origin)."""
        route = self.https if url.scheme == "https" else self.http
        if route.proxy is None or self._bypassed(url):
            return DIRECT
        return route

    def _bypassed(self, url: URL) -> bool:
        if self.bypass_all:
            return True
        host = (url.raw_host or "").lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.networks):
            return True
        if any(host == n or host.endswith("." + n) for n in self.names):
            return True
        port = url.port
        return any(port == p and (host == n or host.endswith("." + n))
                   for n, p in self.name_ports)
