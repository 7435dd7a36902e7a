"""The Host and Origin rules of a worker's HTTP server: pages of other sites get
nothing from it.

- Host: a request must name this server. A page of another site can make its own
  name resolve to a worker's address (DNS rebinding) and read the answers as its
  own, but its requests then carry its name. An IP address (what health checks and
  Prometheus send) and ``localhost`` are always served, and ``http_allowed_hosts``
  adds names. Without that setting, a server that listens on loopback only serves
  no other name; one that listens more widely serves any name.
- Origin: a browser names the page behind a request in ``Origin``. No endpoint is
  meant for another site's pages, so such a request is refused: a page cannot make
  its visitor's browser submit jobs or items. An origin is this server's when it
  matches the Host header, or its name is in ``http_allowed_hosts`` (a proxy that
  rewrites Host). Clients other than browsers send no Origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pe.common.http import HttpError, is_loopback

__all__ = ["HostRules"]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _name(authority: str) -> str | None:
    """The host name of a ``host[:port]``, lower case, IPv6 without brackets."""
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:
        return None


@dataclass(frozen=True)
class HostRules:
    allowed: frozenset[str]  #: names served besides addresses and localhost (lower case)
    any_host: bool  #: every name is served

    @classmethod
    def create(cls, listen_host: str, allowed: Iterable[str]) -> HostRules:
        names = frozenset(name.strip("[]").lower() for name in allowed)
        return cls(names, any_host=not names and not is_loopback(listen_host))

    def check(self, host: str | None, origin: str | None) -> None:
        """Raise HttpError unless a request with these ``Host`` and ``Origin``
        headers is for this server, from no other site's page."""
        if not self.any_host and not self._served(_name(host or "")):
            shown = (host or "")[:100]
            raise HttpError(
                421,
                f"this server does not answer to host {shown!r}: add the name to "
                "http_allowed_hosts (CROWDSTREAM_HTTP_ALLOWED_HOSTS) if it is this server's",
            )
        if origin is not None and not self._ours(origin, host or ""):
            raise HttpError(
                403,
                f"cross-origin request refused (Origin {origin[:100]!r}); if that is a name "
                "of this server behind a proxy, add it to http_allowed_hosts",
            )

    def _served(self, name: str | None) -> bool:
        if name is None:
            return False
        return name == "localhost" or name in self.allowed or _is_address(name)

    def _ours(self, origin: str, host: str) -> bool:
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https"):
            return False
        return parts.netloc.lower() == host.lower() or parts.hostname in self.allowed
