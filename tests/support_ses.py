"""Amazon SES for the tests: moto's server on 127.0.0.1 (a real HTTP endpoint), and a proxy in
front of it that can lose an answer after SES accepted the message, or fail a call with a 500.

moto runs in this process, so what it recorded (`sent_messages`, each with its raw MIME) is
read directly; the sender reaches it over HTTP only, in this process or in a `digest` child.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from tests.conftest import apply_overrides, write_project

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@dataclass
class Moto:
    url: str

    @property
    def backend(self) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]

    def reset(self) -> None:
        import boto3

        self.backend.sent_messages.clear()
        client = boto3.client(
            "sesv2",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_email_identity(EmailIdentity="example.com")  # the sender's verified domain

    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_string(m.raw_data, policy=email.policy.default) for m in list(self.backend.sent_messages)
        ]

    def copies(self) -> Counter[str]:
        """Messages SES accepted, per recipient (from each raw message's To header)."""
        return Counter(parseaddr(str(m["To"]))[1] for m in self.messages())

    def ids(self) -> set[str]:
        return {m.id for m in list(self.backend.sent_messages)}


@contextmanager
def moto_server() -> Iterator[Moto]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield Moto(f"http://{host}:{port}")
    finally:
        server.stop()


@dataclass
class Proxy:
    """Forwards each connection to moto; `lose_answer` / `fail` name call numbers (1-based) to
    answer by closing the connection after moto accepted, or with a 500 without forwarding."""

    target: tuple[str, int]
    lose_answer: set[int] = field(default_factory=set)
    fail: set[int] = field(default_factory=set)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if not request:
                return
            with self.lock:
                self.calls += 1
                n = self.calls
            if n in self.fail:
                body = b'{"message":"Internal failure"}'
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    b"x-amzn-ErrorType: InternalFailure\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                return
            with socket.create_connection(self.target) as upstream:
                upstream.sendall(request)
                answer = _read_all(upstream)
            if n in self.lose_answer:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return  # accepted by SES; the answer is lost (the connection is reset)
            client.sendall(answer)


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def proxy_to(moto: Moto, **faults: set[int]) -> Iterator[tuple[str, Proxy]]:
    host, port = moto.url.rsplit("/", 1)[-1].split(":")
    proxy = Proxy((host, int(port)), **faults)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=proxy.handle, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", proxy
    finally:
        stop.set()
        listener.close()


def ses_project(root: Path, **section: object) -> Path:
    """A project whose transport is SES; `section` overrides [transport.ses] (a fast rate by default)."""
    cfg = write_project(root)
    cfg.write_text(
        apply_overrides(
            cfg.read_text(), {"transport": {"kind": "ses"}, "transport.ses": {"max_send_rate": 1000.0, **section}}
        )
    )
    return cfg
