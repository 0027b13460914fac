"""Amazon SNS over HTTPS: check a message really comes from SNS, and answer the subscription handshake.

SNS signs each message with a certificate it serves from `SigningCertURL`. We fetch that
certificate only from https://sns.<region>.amazonaws.com (.com.cn in China), region spelt as
AWS spells it, in ASCII, and one botocore knows SNS in (a looser pattern once let anyone's S3
bucket, `sns.s3.amazonaws.com`, sign messages), and verify the signature over SNS's canonical
string (SignatureVersion 1: SHA1, 2: SHA256, both RSA PKCS#1 v1.5). A signature proves the
message came through SNS, not that it is ours, so `acceptable` checks the shape and the
TopicArn before anything is fetched.
A wrong topic and a bad signature get one answer (`REFUSED`): nobody can probe our topics.

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
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from digest.delivery.events import EventError

# us-east-1, ap-southeast-2, us-gov-west-1, cn-north-1 (only on amazonaws.com.cn). ASCII only: `\d` would
# match any script's digits, which httpx then cannot request. The region must also be one AWS has (`sns_regions`).
AWS_SNS_HOST = re.compile(r"sns\.(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-[0-9])\.amazonaws\.com(?P<cn>\.cn)?", re.ASCII)
SNS_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")  # the partitions whose SNS endpoints are on amazonaws.com(.cn)
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SIGNED_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SIGNED_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
# The one answer for every message we cannot verify as ours: wrong topic, unsigned, bad signature or certificate.
REFUSED = "not a verified SNS message of a configured topic"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERT_BYTES = 64 * 1024
log = logging.getLogger("digest.providers.ses.sns")
_warned: set[str] = set()


@lru_cache(maxsize=1)
def sns_regions() -> frozenset[str]:
    """The regions AWS has SNS in, from botocore's bundled endpoint data (no network): a host
    merely shaped like a region would be fetched, and its failure (503) answered unlike a wrong
    topic's 401. A region newer than the installed botocore needs a botocore upgrade."""
    import botocore.session  # a dependency (the SES transport); loaded only when SNS is used

    session = botocore.session.get_session()
    return frozenset(r for p in SNS_PARTITIONS for r in session.get_available_regions("sns", partition_name=p))


@dataclass(frozen=True)
class SnsTrust:
    """Which URLs SNS certificates and handshakes may come from. The default trusts only AWS."""

    extra_host: str | None = None  # host:port a test serves its certificate from (https only)
    ca_file: str | None = None  # that server's CA, added to the system's

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SnsTrust:
        trust = cls(
            extra_host=env.get("DIGEST_SNS_TEST_HOST", "").strip() or None,
            ca_file=env.get("DIGEST_SNS_TEST_CA_FILE", "").strip() or None,
        )
        if trust.extra_host and trust.extra_host not in _warned:
            _warned.add(trust.extra_host)
            log.warning(
                "DIGEST_SNS_TEST_HOST is set: SNS messages signed via %s are trusted (tests only)", trust.extra_host
            )
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
        host = AWS_SNS_HOST.fullmatch(parts.hostname or "")
        if host and port in (None, 443):
            return host["region"].startswith("cn-") == bool(host["cn"]) and host["region"] in sns_regions()
        return self.extra_host is not None and parts.netloc == self.extra_host

    def allows_certificate(self, url: str) -> bool:
        """`allows`, and the URL names a .pem file and nothing else (no query, no fragment)."""
        if not self.allows(url):  # also refuses what urlsplit cannot read
            return False
        parts = urlsplit(url)
        return parts.path.endswith(".pem") and not parts.query and not parts.fragment

    def client(self) -> httpx.Client:
        context = ssl.create_default_context()
        if self.ca_file:
            try:
                context.load_verify_locations(self.ca_file)
            except (OSError, ssl.SSLError):
                raise EventError(503, "DIGEST_SNS_TEST_CA_FILE is not a readable PEM file") from None
        return httpx.Client(verify=context, timeout=10.0, follow_redirects=False)


def envelope(body: bytes) -> dict[str, Any]:
    """The SNS JSON envelope with the fields its Type needs (text, not empty); 400 when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise EventError(400, "body is not an SNS message (JSON)") from None
    if not isinstance(data, dict) or data.get("Type") not in TYPES:
        raise EventError(400, "body is not an SNS message (Type missing or unknown)")
    keys = _SIGNED_NOTIFICATION if data["Type"] == "Notification" else _SIGNED_CONFIRMATION
    for key in keys:
        value = data.get(key)
        if key == "Subject" and (value is None or isinstance(value, str)):
            continue  # optional, and may be empty
        if not isinstance(value, str) or not value:
            raise EventError(400, f"SNS message without {key}")
    return data


def acceptable(message: Mapping[str, Any], topics: list[str], trust: SnsTrust) -> None:
    """Everything that can be checked before fetching anything: a SubscribeURL on SNS (400), then
    our topic and the signature's fields (REFUSED, 401, whichever fails: the answer never says)."""
    if message["Type"] == "SubscriptionConfirmation" and not trust.allows(message["SubscribeURL"]):
        raise EventError(400, "SubscribeURL is not an https sns.<region>.amazonaws.com URL")
    if message["TopicArn"] not in topics:
        raise _refused("a topic not in webhooks.sns_topic_arns")
    _signature_fields(message, trust)


def _refused(reason: str) -> EventError:
    log.info("SNS message refused: %s", reason)
    return EventError(401, REFUSED)


def _signature_fields(message: Mapping[str, Any], trust: SnsTrust) -> tuple[type[hashes.HashAlgorithm], str, bytes]:
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise _refused("unsigned (SignatureVersion must be 1 or 2)")
    cert_url = message.get("SigningCertURL")
    if not isinstance(cert_url, str) or not trust.allows_certificate(cert_url):
        raise _refused("SigningCertURL is not an https sns.<region>.amazonaws.com certificate")
    raw = message.get("Signature")
    try:
        signature = base64.b64decode(raw if isinstance(raw, str) else "", validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not signature:
        raise _refused("Signature is not base64")
    return algorithm, cert_url, signature


def verify(message: Mapping[str, Any], trust: SnsTrust) -> None:
    """Raise EventError(401, REFUSED) unless the message carries a valid SNS signature from a trusted certificate."""
    algorithm, cert_url, signature = _signature_fields(message, trust)
    key = _certificate(cert_url, trust).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _refused("the SNS certificate does not hold an RSA key")
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, ValueError):
        raise _refused("invalid signature") from None


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """SNS's canonical form: the signed keys in order, each as 'key\\nvalue\\n' (Subject only when present)."""
    keys = _SIGNED_NOTIFICATION if message.get("Type") == "Notification" else _SIGNED_CONFIRMATION
    out = []
    for k in keys:
        value = message.get(k)
        if value is None and k == "Subject":
            continue
        if not isinstance(value, str):
            raise _refused(f"invalid signature ({k} missing)")
        out.append(f"{k}\n{value}\n")
    return "".join(out).encode()


def confirm_subscription(message: Mapping[str, Any], trust: SnsTrust) -> None:
    """Visit SubscribeURL (only on a trusted SNS host): SNS then starts delivering to us."""
    url = message.get("SubscribeURL")
    if not isinstance(url, str) or not trust.allows(url):
        raise EventError(400, "SubscribeURL is not an https sns.<region>.amazonaws.com URL")
    try:
        with trust.client() as client:
            response = client.send(_request(client, url, "SubscribeURL"))
    except httpx.HTTPError as exc:
        raise EventError(502, f"could not confirm the SNS subscription: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise EventError(502, f"SNS refused the subscription confirmation ({response.status_code})")


def _request(client: httpx.Client, url: str, field: str) -> httpx.Request:
    """The GET for `url`, or REFUSED when httpx cannot build it (InvalidURL is no HTTPError): a URL
    we cannot even request is refused like any untrusted one, never answered 500."""
    try:
        return client.build_request("GET", url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refused(f"{field} cannot be requested ({type(exc).__name__})") from None


_cache: dict[str, x509.Certificate] = {}
_cache_lock = threading.Lock()


def _certificate(url: str, trust: SnsTrust) -> x509.Certificate:
    """The signing certificate, fetched once per URL (SNS rotates them rarely); 503 when SNS cannot
    be reached or fails (SNS retries), REFUSED when it has no such certificate."""
    with _cache_lock:
        cert = _cache.get(url)
    if cert is None:
        try:
            with trust.client() as client:
                response = client.send(_request(client, url, "SigningCertURL"))
        except httpx.HTTPError as exc:
            raise EventError(503, f"could not fetch the SNS certificate: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise EventError(503, f"could not fetch the SNS certificate ({response.status_code})")
        if response.status_code != 200 or len(response.content) > MAX_CERT_BYTES:
            raise _refused(f"no SNS certificate at SigningCertURL ({response.status_code})")
        try:
            cert = x509.load_pem_x509_certificate(response.content)
        except ValueError:
            raise _refused("SigningCertURL does not hold a PEM certificate") from None
        with _cache_lock:
            if len(_cache) >= 32:
                _cache.clear()
            _cache[url] = cert
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _refused("the SNS certificate is expired or not yet valid")
    return cert
