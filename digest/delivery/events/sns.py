"""Amazon SNS over HTTPS: check a message really comes from SNS, and answer the subscription handshake.

SNS signs each message with a certificate it serves from `SigningCertURL`. We fetch that
certificate only from https://sns.<region>.amazonaws.com (a looser "any amazonaws.com host"
once let anyone's S3 bucket sign messages) and verify the signature over SNS's canonical
string (SignatureVersion 1: SHA1, 2: SHA256, both RSA PKCS#1 v1.5). A signature proves the
message came through SNS, not that it is ours: the caller also checks the TopicArn.

Tests serve their own certificate: `DIGEST_SNS_TEST_HOST` (host:port) and
`DIGEST_SNS_TEST_CA_FILE` add one https host and one CA to trust. Unset, only AWS counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from digest.delivery.events import EventError

AWS_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SIGNED_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SIGNED_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
log = logging.getLogger("digest.delivery.events.sns")
_warned: set[str] = set()


@dataclass(frozen=True)
class SnsTrust:
    """Which URLs SNS certificates and handshakes may come from. The default trusts only AWS."""

    extra_host: str | None = None  # host:port a test serves its certificate from (https only)
    ca_file: str | None = None  # that server's CA, added to the system's

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SnsTrust:
        trust = cls(extra_host=env.get("DIGEST_SNS_TEST_HOST", "").strip() or None,
                    ca_file=env.get("DIGEST_SNS_TEST_CA_FILE", "").strip() or None)
        if trust.extra_host and trust.extra_host not in _warned:
            _warned.add(trust.extra_host)
            log.warning("DIGEST_SNS_TEST_HOST is set: SNS messages signed via %s are trusted (tests only)",
                        trust.extra_host)
        return trust

    def allows(self, url: str) -> bool:
        """An https URL on an SNS host (no credentials, default port), or the test host exactly."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme != "https" or parts.username is not None or parts.password is not None:
            return False
        if AWS_SNS_HOST.fullmatch(parts.hostname or "") and port in (None, 443):
            return True
        return self.extra_host is not None and parts.netloc == self.extra_host

    def client(self) -> httpx.Client:
        context = ssl.create_default_context()
        if self.ca_file:
            try:
                context.load_verify_locations(self.ca_file)
            except (OSError, ssl.SSLError):
                raise EventError(503, "DIGEST_SNS_TEST_CA_FILE is not a readable PEM file") from None
        return httpx.Client(verify=context, timeout=10.0, follow_redirects=False)


def envelope(body: bytes) -> dict[str, str]:
    """The SNS JSON envelope; 400 when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise EventError(400, "body is not an SNS message (JSON)") from None
    if not isinstance(data, dict) or data.get("Type") not in TYPES:
        raise EventError(400, "body is not an SNS message (Type missing or unknown)")
    for key in ("MessageId", "TopicArn", "Message", "Timestamp"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise EventError(400, f"SNS message without {key}")
    return data


def verify(message: Mapping[str, Any], trust: SnsTrust) -> None:
    """Raise EventError(401) unless the message carries a valid SNS signature from a trusted certificate."""
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise EventError(401, "unsigned SNS message (SignatureVersion must be 1 or 2)")
    cert_url = message.get("SigningCertURL")
    if not isinstance(cert_url, str) or not trust.allows(cert_url) or not urlsplit(cert_url).path.endswith(".pem"):
        raise EventError(401, "SigningCertURL is not an https sns.<region>.amazonaws.com certificate")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise EventError(401, "invalid signature") from None
    key = _certificate(cert_url, trust).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise EventError(401, "SNS certificate does not hold an RSA key")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, ValueError):
        raise EventError(401, "invalid signature") from None


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """SNS's canonical form: the signed keys in order, each as 'key\\nvalue\\n' (Subject only when present)."""
    keys = _SIGNED_NOTIFICATION if message.get("Type") == "Notification" else _SIGNED_CONFIRMATION
    out = []
    for k in keys:
        value = message.get(k)
        if value is None and k == "Subject":
            continue
        if not isinstance(value, str):
            raise EventError(401, f"invalid signature ({k} missing)")
        out.append(f"{k}\n{value}\n")
    return "".join(out).encode()


def confirm_subscription(message: Mapping[str, Any], trust: SnsTrust) -> None:
    """Visit SubscribeURL (only on a trusted SNS host): SNS then starts delivering to us."""
    url = message.get("SubscribeURL")
    if not isinstance(url, str) or not trust.allows(url):
        raise EventError(400, "SubscribeURL is not an https sns.<region>.amazonaws.com URL")
    try:
        with trust.client() as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise EventError(502, f"could not confirm the SNS subscription: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise EventError(502, f"SNS refused the subscription confirmation ({response.status_code})")


_cache: dict[str, x509.Certificate] = {}
_cache_lock = threading.Lock()


def _certificate(url: str, trust: SnsTrust) -> x509.Certificate:
    """The signing certificate, fetched once per URL (SNS rotates them rarely); 503 when unreachable."""
    with _cache_lock:
        cert = _cache.get(url)
    if cert is None:
        try:
            with trust.client() as client:
                response = client.get(url)
        except httpx.HTTPError as exc:
            raise EventError(503, f"could not fetch the SNS certificate: {type(exc).__name__}") from None
        if response.status_code != 200 or len(response.content) > MAX_CERT_BYTES:
            raise EventError(503, f"could not fetch the SNS certificate ({response.status_code})")
        try:
            cert = x509.load_pem_x509_certificate(response.content)
        except ValueError:
            raise EventError(401, "SigningCertURL does not hold a PEM certificate") from None
        with _cache_lock:
            if len(_cache) >= 32:
                _cache.clear()
            _cache[url] = cert
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EventError(401, "SNS certificate is expired or not yet valid")
    return cert
