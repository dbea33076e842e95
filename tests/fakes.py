"""Local stand-ins on 127.0.0.1: a Twilio REST endpoint, an SMTP server, and a TCP relay to
PostgreSQL whose link a test can cut.

The real twilio and yagmail clients talk to them; nothing is patched. The fake Twilio server
plays a script of behaviours, one per message posted: accept, refuse an invalid number,
429, 500, answer too slowly, drop the connection before or after accepting, or accept and
then block until released (for the crash test).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "s3cret-token-" + "x" * 19
BEHAVIOURS = ("ok", "invalid", "429", "500", "slow", "drop", "accept_then_drop", "block")


@dataclass
class FakeTwilio:
    """A Twilio Messages API on 127.0.0.1; `messages` is what it accepted."""

    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    slow_seconds: float = 3.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # "POST /path", "GET /path?query"
    retry_after: str | None = None  # the Retry-After header of a 429 answer, if any
    script: list[str] = field(default_factory=list)
    accepted: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._post(self)

            def do_GET(self) -> None:
                fake._get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]

    # ------------------------------------------------------------------ handlers

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if h.headers.get("Authorization") == f"Basic {expected}":
            return True
        self._answer(h, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        return False

    def _answer(self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        h.send_response(status)
        if status in (429, 503) and self.retry_after is not None:
            h.send_header("Retry-After", self.retry_after)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _drop(self, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.connection.close()

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(f"POST {h.path}")
        length = int(h.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        if not self._authorised(h):
            return
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "invalid":
            message = f"The 'To' number {form.get('To')} is not a valid phone number."
            self._answer(h, 400, {"code": 21211, "message": message, "status": 400})
            return
        if behaviour in ("429", "500"):
            self._answer(h, int(behaviour), {"code": 20000 + int(behaviour), "status": 500})
            return
        if behaviour == "drop":
            self._drop(h)
            return
        resource = self._accept(form)
        if behaviour == "accept_then_drop":
            self._drop(h)
            return
        if behaviour == "block":
            self.accepted.set()
            self.release.wait(60)
        elif behaviour == "slow":
            self.release.wait(self.slow_seconds)
        try:
            self._answer(h, 201, resource)
        except OSError:
            pass  # the client has gone (timed out, or was killed)

    def _accept(self, form: dict[str, str]) -> dict[str, Any]:
        created = self.now().strftime("%a, %d %b %Y %H:%M:%S +0000")
        resource = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": ACCOUNT_SID,
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "direction": "outbound-api",
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "num_segments": "1",
            "uri": "",
        }
        self.messages.append(resource)
        return resource

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(f"GET {h.path}")
        if not self._authorised(h):
            return
        query = {k: v[0] for k, v in parse_qs(urlparse(h.path).query).items()}
        found = [
            m
            for m in reversed(self.messages)
            if m["to"] == query.get("To", m["to"]) and m["from"] == query.get("From", m["from"])
        ]
        self._answer(
            h,
            200,
            {
                "messages": found,
                "page": 0,
                "page_size": 50,
                "first_page_uri": h.path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": h.path,
                "end": len(found),
                "start": 0,
            },
        )


class _Recorder:
    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.refuse: dict[str, str] = {}  # recipient -> SMTP reply

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.envelopes.append(envelope)
        return "250 Message accepted"


class FakeSmtp:
    """An SMTP server on 127.0.0.1 that records what arrives; it takes one user's login."""

    user = "crm@dealer.example.com"
    password = "smtp-pa55word"

    def __init__(self) -> None:
        self.recorder = _Recorder()

        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode(),
                data.password.decode(),
            ) == (self.user, self.password)
            return AuthResult(success=ok, handled=False, auth_data=data)

        with socket.socket() as probe:  # a free port (the controller wants a fixed one)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
            decode_data=False,
        )
        self.controller.start()

    @property
    def received(self) -> list[EmailMessage]:
        return self.recorder.received

    def stop(self) -> None:
        self.controller.stop()


class TcpProxy:
    """A TCP relay on 127.0.0.1 to a real server (PostgreSQL), whose link can be cut.

    `cut()` drops every open connection and refuses new ones, as when the database server
    restarts or the network between the hosts fails; `restore()` takes connections again on
    the same port.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        if listener is not None:
            listener.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
