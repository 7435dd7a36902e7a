"""A webhook receiver for the notifier's tests."""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tests.integration.conftest import WEBHOOK_SECRET


class Hooks:
    """A webhook receiver on this machine that keeps what it is sent, checking each
    delivery's signature as a receiver must. While ``accepting`` is False it answers
    503 to every delivery and keeps it in ``refused``, as a receiver that is down."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        refused: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed = self.headers["X-Crowdstream-Timestamp"].encode() + b"." + body
                mac = hmac.new(WEBHOOK_SECRET, signed, hashlib.sha256).hexdigest()
                good = hmac.compare_digest(f"sha256={mac}", self.headers["X-Crowdstream-Signature"])
                if good and not hooks.accepting:
                    refused.append(orjson.loads(body))
                    self.send_response(503)
                elif good:
                    received.append(orjson.loads(body))
                    self.send_response(204)
                else:
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.accepting = True
        self.received = received
        self.refused = refused
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
