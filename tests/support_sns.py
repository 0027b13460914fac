"""A stand-in for SNS's side of the wire: certificates, a local HTTPS server, signed messages.

The server plays sns.<region>.amazonaws.com: it serves the signing certificate and answers
the SubscribeURL visit, over real TLS with a certificate for 127.0.0.1 that only the
service under test is told to trust (DIGEST_SNS_TEST_HOST / DIGEST_SNS_TEST_CA_FILE).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from digest.providers.ses.sns import string_to_sign

TOPIC = "arn:aws:sns:eu-west-1:123456789012:digest-ses"
CERT_PATH = "/SimpleNotificationService-test.pem"


def self_signed(name: str, ip: str | None = None) -> tuple[rsa.RSAPrivateKey, bytes]:
    """A fresh RSA key and a self-signed PEM certificate for it (valid for a day)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return key, builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns:
    """The local HTTPS server and what was asked of it."""

    host: str  # 127.0.0.1:<port>
    ca_file: Path
    signing_key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"https://{self.host}{CERT_PATH}"

    @property
    def env(self) -> dict[str, str]:
        return {"DIGEST_SNS_TEST_HOST": self.host, "DIGEST_SNS_TEST_CA_FILE": str(self.ca_file)}

    def subscribe_url(self, token: str) -> str:
        return f"https://{self.host}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"

    def confirmations(self) -> list[str]:
        return [r for r in self.requests if "Action=ConfirmSubscription" in r]


@contextmanager
def fake_sns(folder: Path) -> Iterator[FakeSns]:
    folder.mkdir(parents=True, exist_ok=True)
    tls_key, tls_cert = self_signed("127.0.0.1", ip="127.0.0.1")
    (folder / "tls.pem").write_bytes(tls_cert)
    (folder / "tls.key").write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    signing_key, signing_cert = self_signed("sns.amazonaws.com")
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
            requests.append(self.path)
            if self.path == CERT_PATH:
                self._send(200, signing_cert, "application/x-pem-file")
            elif "Action=ConfirmSubscription" in self.path:
                self._send(200, b"<ConfirmSubscriptionResponse/>", "text/xml")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "tls.pem", folder / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeSns(
            host=f"127.0.0.1:{server.server_address[1]}",
            ca_file=folder / "tls.pem",
            signing_key=signing_key,
            requests=requests,
        )
    finally:
        server.shutdown()
        server.server_close()


def signed(message: dict[str, str], key: rsa.RSAPrivateKey, cert_url: str, version: str = "2") -> dict[str, str]:
    """`message` with SNS's SignatureVersion, SigningCertURL and Signature."""
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    out = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
    out["Signature"] = base64.b64encode(key.sign(string_to_sign(out), padding.PKCS1v15(), algorithm)).decode()
    return out


def notification(ses_event: dict[str, Any], topic: str = TOPIC) -> dict[str, str]:
    """An unsigned SNS Notification carrying an SES event."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": json.dumps(ses_event),
        "Timestamp": "2026-11-18T12:05:00.000Z",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def subscription_confirmation(sns: FakeSns, token: str = "tok-123") -> dict[str, str]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Token": token,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": sns.subscribe_url(token),
        "Timestamp": "2026-11-18T12:00:00.000Z",
    }


def ses_event(event_type: str, message_id: str, to: list[str], **section: Any) -> dict[str, Any]:
    """An SES event-publishing record: mail plus the event's own section (`bounce`, `complaint`, ...)."""
    name = event_type[:1].lower() + event_type[1:]
    return {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-11-18T12:00:00.000Z",
            "messageId": message_id,
            "source": "verdicts@example.com",
            "destination": to,
        },
        name: {"timestamp": "2026-11-18T12:05:00.000Z", **section},
    }


def bounce(message_id: str, to: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return ses_event(
        "Bounce",
        message_id,
        [to],
        bounceType=bounce_type,
        bounceSubType="General",
        bouncedRecipients=[{"emailAddress": to, "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
    )


def complaint(message_id: str, to: str) -> dict[str, Any]:
    return ses_event(
        "Complaint", message_id, [to], complaintFeedbackType="abuse", complainedRecipients=[{"emailAddress": to}]
    )
