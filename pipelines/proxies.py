"""Trusted reverse proxies: the client address behind them.

Behind a reverse proxy every request comes from the proxy's address, so per-client
limits (requests a second, connections, result streams) would put every client in one
bucket. A proxy names the client in ``Forwarded`` (RFC 7239) or ``X-Forwarded-For``.
Those headers are believed only from the listed proxies (``trusted_proxies``): anyone
else could write them to pick a new address for each request. The client is the
right-most address in the chain that is not a trusted proxy (each proxy appends the
address it heard from, so addresses to the left of an untrusted one may be made up).

aiohttp-remotes' ``XForwardedFiltered`` believes the header from any peer, and
``XForwardedStrict`` needs the exact number of proxies in front: hence this check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address of a forwarding header (``[v6]:port``, ``v4:port`` or bare), or None."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # "unknown", an obfuscated name (RFC 7239), or garbage


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """Comma-separated addresses or networks (``10.0.0.0/8``); ValueError names a
        bad one."""
        networks = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an address or network"
                ) from None
        return cls(tuple(networks))

    def trusts(self, address: str | None) -> bool:
        ip = _address(address) if address else None
        return ip is not None and any(ip in network for network in self.networks)

    def client(
        self, peer: str | None, forwarded: Iterable[str], x_forwarded_for: Sequence[str]
    ) -> str | None:
        """The client's address: ``peer``'s, or behind a trusted proxy, the one the
        chain names (``forwarded``: the ``for`` values of ``Forwarded``, which wins
        over ``X-Forwarded-For``)."""
        if not self.trusts(peer):
            return peer
        chain = list(forwarded) or [a for header in x_forwarded_for for a in header.split(",")]
        for raw in reversed(chain):
            ip = _address(raw)
            if ip is None:
                return peer  # a chain we cannot read names nobody
            if not any(ip in network for network in self.networks):
                return str(ip)
        return peer if not chain else str(_address(chain[0]))
