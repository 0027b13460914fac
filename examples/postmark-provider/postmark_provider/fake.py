"""A local Postmark for tests, built from Postmark's documentation and strict about it.

POST /email/batch only, with `X-Postmark-Server-Token` (401 with ErrorCode 10 otherwise),
`Accept` and `Content-Type` JSON, a JSON array of 1 to 500 messages (422 with ErrorCode 410
past 500, 402 for invalid JSON, 300 for an invalid message: From, To, Subject, and an HtmlBody
or TextBody, Headers as `{Name, Value}` objects, a known MessageStream). Each accepted message
gets a MessageID; an address marked inactive gets ErrorCode 406 in its element, as Postmark does.

Fails on demand: `fail(status, times)` answers the next calls with that status (429, 500,
503 ...), `drop(times)` accepts the next calls and then closes the connection without an
answer (the moment a naive sender would resend), `slow` delays every answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "fake-postmark-server-token"
STREAMS = {"outbound", "broadcast"}
MAX_MESSAGES = 500
_ERRORS = {402: "Invalid JSON", 409: "JSON required", 410: "Too many batch messages", 300: "Invalid email request"}


@dataclass
class FakePostmark:
    token: str = TOKEN
    slow: float = 0.0
    inactive: set[str] = field(default_factory=set)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # every message taken, with its MessageID
    calls: int = 0
    _fail: list[int] = field(default_factory=list)
    _drop: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int, times: int = 1) -> None:
        with self.lock:
            self._fail.extend([status] * times)

    def drop(self, times: int = 1) -> None:
        with self.lock:
            self._drop += times

    def copies(self) -> Counter[str]:
        with self.lock:
            return Counter(m["To"] for m in self.accepted)

    def handle(self, path: str, headers: Any, body: bytes) -> tuple[int, Any, bool]:
        """(status, JSON answer, answer at all?) for one request."""
        with self.lock:
            self.calls += 1
            if self._fail:
                status = self._fail.pop(0)
                return status, {"ErrorCode": 100 if status == 503 else status, "Message": "failing on demand"}, True
        if path != "/email/batch":
            return 404, {"ErrorCode": 404, "Message": "not found"}, True
        if headers.get("X-Postmark-Server-Token") != self.token:
            return 401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."}, True
        if "application/json" not in (headers.get("Content-Type") or "") or "application/json" not in (
            headers.get("Accept") or ""
        ):
            return 422, {"ErrorCode": 409, "Message": _ERRORS[409]}, True
        try:
            batch = json.loads(body)
        except ValueError:
            return 422, {"ErrorCode": 402, "Message": _ERRORS[402]}, True
        if not isinstance(batch, list) or not batch:
            return 422, {"ErrorCode": 300, "Message": "the batch is a JSON array of messages"}, True
        if len(batch) > MAX_MESSAGES:
            return 422, {"ErrorCode": 410, "Message": _ERRORS[410]}, True
        problem = next((p for p in map(_invalid, batch) if p), None)
        if problem:
            return 422, {"ErrorCode": 300, "Message": f"{_ERRORS[300]}: {problem}"}, True
        return 200, self._accept(batch), self._answers()

    def _accept(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = []
        with self.lock:
            for m in batch:
                if m["To"] in self.inactive:
                    answer.append(
                        {
                            "ErrorCode": 406,
                            "Message": "You tried to send to recipient(s) that have been marked as inactive.",
                            "To": m["To"],
                        }
                    )
                    continue
                mid = str(uuid.uuid4())
                self.accepted.append({**m, "MessageID": mid})
                answer.append(
                    {
                        "ErrorCode": 0,
                        "Message": "OK",
                        "MessageID": mid,
                        "To": m["To"],
                        "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    }
                )
        return answer

    def _answers(self) -> bool:
        with self.lock:
            if self._drop:
                self._drop -= 1
                return False
        return True


def _invalid(m: Any) -> str:
    if not isinstance(m, dict):
        return "a message is not an object"
    for name in ("From", "To", "Subject"):
        if not isinstance(m.get(name), str) or not m[name].strip():
            return f"{name} is required"
    if not (m.get("HtmlBody") or m.get("TextBody")):
        return "Provide either email TextBody or HtmlBody or both."
    headers = m.get("Headers", [])
    if not isinstance(headers, list) or any(not isinstance(h, dict) or set(h) != {"Name", "Value"} for h in headers):
        return "Headers must be a list of {Name, Value}"
    if m.get("MessageStream", "outbound") not in STREAMS:
        return f"message stream {m.get('MessageStream')!r} not found"
    return ""


def _handler(state: FakePostmark) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer, reply = state.handle(self.path, self.headers, body)
            if state.slow:
                time.sleep(state.slow)
            if not reply:
                self.close_connection = True
                self.connection.close()
                return
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            pass

    return Handler


@contextmanager
def serve(state: FakePostmark | None = None) -> Iterator[tuple[str, FakePostmark]]:
    """A running fake on 127.0.0.1 (a free port): its URL (POSTMARK_API_URL) and its state."""
    state = state or FakePostmark()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
