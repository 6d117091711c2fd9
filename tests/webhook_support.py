"""A real HTTP receiver on loopback that records webhooks, and a clock tests move by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import threading
from typing import Any

from standardwebhooks.webhooks import Webhook


class ManualClock:
    """Starts at the real time (receivers check webhook timestamps against it) and moves on demand."""

    def __init__(self) -> None:
        self.instant = dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self.instant

    def advance(self, delta: dt.timedelta) -> None:
        self.instant += delta


@dataclasses.dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The body, if the signature is valid for `secret` (raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers as told."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        # Answers in order; once used up, 204.
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                    status, headers, reply = receiver.script.pop(0) if receiver.script else (204, {}, b"")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, *answers: int | tuple[int, dict[str, str], bytes]) -> None:
        with self._lock:
            self.script.extend(a if isinstance(a, tuple) else (a, {}, b"") for a in answers)

    def of_type(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.json()["type"].startswith(prefix)]

    def types(self) -> list[str]:
        return [r.json()["type"] for r in self.received]
