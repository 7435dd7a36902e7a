"""How this process connects to its Kafka cluster: TLS and SASL options for every client.

A process talks to one cluster. ``configure`` is called once at start-up with the
settings; every aiokafka client crowdstream creates (data plane, followers, admin,
command-line clients) takes :func:`client_options`, and Faust takes
:func:`faust_credentials`, so the whole process connects the same way.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

if TYPE_CHECKING:
    import faust

__all__ = ["Security", "client_options", "configure", "faust_credentials"]


@dataclass(frozen=True)
class Security:
    protocol: str = "PLAINTEXT"  #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    sasl_mechanism: str = "PLAIN"  #: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.protocol.startswith("SASL") and not (self.username and self.password):
            raise ValueError(
                f"security_protocol {self.protocol} needs sasl_username and sasl_password"
            )
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"ssl_{name} {str(path)!r} is not a file")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (client certificates)")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile
        )
        return context


_security = Security()
_context: ssl.SSLContext | None = None


def configure(security: Security) -> None:
    """Use ``security`` for every client this process creates from now on."""
    global _security, _context
    _security, _context = security, security.ssl_context()


def client_options() -> dict[str, Any]:
    """Keyword arguments for an aiokafka consumer, producer or admin client."""
    options: dict[str, Any] = {"security_protocol": _security.protocol}
    if _context is not None:
        options["ssl_context"] = _context
    if _security.protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": _security.sasl_mechanism,
            "sasl_plain_username": _security.username,
            "sasl_plain_password": _security.password,
        }
    return options


def faust_credentials() -> faust.SASLCredentials | faust.SSLCredentials | None:
    """The same connection for Faust's app (``broker_credentials``)."""
    import faust  # only workers need it; command-line clients start faster without

    if _security.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=_security.username,
            password=_security.password,
            ssl_context=_context,
            mechanism=_security.sasl_mechanism,
        )
    if _context is not None:
        return faust.SSLCredentials(_context)
    return None
