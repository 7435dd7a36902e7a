"""How this process connects to its Kafka cluster: TLS and SASL options for every client.

The settings make one :class:`Security` (``Settings.security()``), and it is passed to
every aiokafka client crowdstream creates (data plane, followers, admin, command-line
clients: :meth:`Security.client_options`) and to Faust
(:meth:`Security.faust_credentials`), so a process connects the same way throughout,
and nothing about it is kept in a global.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.helpers import create_ssl_context

if TYPE_CHECKING:
    import faust

__all__ = ["PLAINTEXT", "Security"]


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

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """One TLS context for every client made with this security (made once)."""
        if not self.tls:
            return None
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile
        )
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer, producer or admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.protocol.startswith("SASL"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options

    def faust_credentials(self) -> faust.SASLCredentials | faust.SSLCredentials | None:
        """The same connection for Faust's app (``broker_credentials``)."""
        import faust  # only workers need it; command-line clients start faster without

        if self.protocol.startswith("SASL"):
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context,
                mechanism=self.sasl_mechanism,
            )
        if self.ssl_context is not None:
            return faust.SSLCredentials(self.ssl_context)
        return None


#: No TLS, no SASL: the embedded broker and the tests.
PLAINTEXT = Security()
