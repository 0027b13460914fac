"""SMTP (smtplib): STARTTLS, implicit TLS or plain; one kept-alive connection per sending thread.

SMTP has no batch call and no idempotency of its own, so a batch is sent message by
message over a connection of its own (kept open for the next batch), and each message's result
is handed to the caller (`on_result`) the moment the server answers, before the next one goes
out: a crash repeats at most the message in flight on each connection. If the connection
breaks halfway, the messages already accepted come back as sent and the rest as `retry`,
and only those are sent again.
`smtp.connections` batches of a process are in flight at once, so a local MTA is fed
in parallel. Resend's SMTP server deduplicates by the
`Resend-Idempotency-Key` header, which we set per message there.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from digest.config import Config
from digest.delivery.transports.base import BaseTransport, OnResult, ProviderRefusal, SendResult, TransientError
from digest.delivery.transports.smtp_wire import Wire, dot_stuffed, from_domain, message_bytes
from digest.delivery.verp import check_bounce_address, from_config
from digest.mail import OutgoingEmail, to_mime
from digest.providers.registry import Capabilities, TransportSection

if TYPE_CHECKING:
    from typing_extensions import Buffer


class SmtpSection(TransportSection):
    """`[transport.smtp]`; the password comes from DIGEST_SMTP_PASSWORD."""

    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    timeout_seconds: float = Field(30, gt=0)
    connections: int = Field(4, ge=1, le=32)  # batches in flight per process, one connection each
    # Envelope sender base: each message goes out as bounces+<signed token>@... (digest.delivery.verp).
    bounce_address: str = ""

    _bounce = field_validator("bounce_address")(check_bounce_address)


# No idempotency of its own: each accepted message is recorded before the next goes out.
CAPABILITIES = Capabilities(idempotent=False, max_batch=100, per_message_results=True)


def is_resend_smtp(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "smtp.resend.com" or host.endswith(".resend.com")


class _SMTP(smtplib.SMTP):
    """smtplib's client whose DATA dot-stuffs bytes in one bytes.replace instead of a regular
    expression over the whole message (about 0.3 ms per 60 KB digest); nothing else changes."""

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        if not isinstance(msg, bytes):
            return super().data(msg)
        self.putcmd("data")
        code, repl = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        q = dot_stuffed(msg)
        self.send(q + (b".\r\n" if q[-2:] == b"\r\n" else b"\r\n.\r\n"))
        return self.getreply()


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):  # noqa: N801 - smtplib's own name, with our DATA
    """Implicit TLS, with the same DATA."""


class _Retry(Exception):
    """This message was not accepted but may be later (4xx, connection lost)."""


PASSWORD = "DIGEST_SMTP_PASSWORD"


class SmtpTransport(BaseTransport):
    name = "smtp"

    def __init__(self, config: Config):
        self.settings = config.transport_section("smtp")
        self.max_in_flight = self.settings.connections
        self.password = config.secret("smtp", PASSWORD)
        self.resend = is_resend_smtp(self.settings.host)
        self._local = threading.local()  # the connection of the batch this thread is sending
        self._idle: list[smtplib.SMTP] = []  # kept alive between batches, for any thread
        self._open: set[smtplib.SMTP] = set()  # all of them, for close()
        self._open_lock = threading.Lock()
        self.verp = from_config(config)  # None: the envelope sender is the From address

    @property
    def _conn(self) -> smtplib.SMTP | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, conn: smtplib.SMTP | None) -> None:
        old = getattr(self._local, "conn", None)
        with self._open_lock:
            if old is not None:
                self._open.discard(old)
            if conn is not None:
                self._open.add(conn)
        self._local.conn = conn

    # -- connection -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"SMTP {self.settings.host}:{self.settings.port} ({self.settings.security})"

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        try:
            if s.security == "tls":
                conn: smtplib.SMTP = _SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
            else:
                conn = _SMTP(s.host, s.port, timeout=s.timeout_seconds)
            if conn.sock is not None:  # commands are small writes that wait for replies: no Nagle delay
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if s.username:
                conn.login(s.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderRefusal(
                f"{self._where()} refused the login of {s.username!r}: {exc.smtp_code} "
                f"{_text(exc.smtp_error)}; check smtp.username and DIGEST_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderRefusal(f"{self._where()}: {exc}; set smtp.security to what the server offers") from None
        except ssl.SSLCertVerificationError as exc:
            raise ProviderRefusal(
                f"{self._where()}: the server's certificate is not trusted: {exc.verify_message}"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"{self._where()}: cannot connect: {type(exc).__name__}: {exc}") from None
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    # -- sending --------------------------------------------------------------------------

    def _extra(self, email: OutgoingEmail, idempotency_key: str) -> tuple[tuple[str, str], ...]:
        if self.resend:
            return (("Resend-Idempotency-Key", f"{idempotency_key}/{email.key}"[:256]),)
        return ()

    def message(self, email: OutgoingEmail, idempotency_key: str) -> EmailMessage:
        """The message as the email package builds it (sent through `send_message` when it needs SMTPUTF8)."""
        msg = to_mime(email, _domain(email))
        for name, value in self._extra(email, idempotency_key):
            msg[name] = value
        return msg

    def wire(self, email: OutgoingEmail, idempotency_key: str) -> Wire | None:
        """The same message as bytes, built at a fraction of the CPU (None: it needs SMTPUTF8)."""
        return message_bytes(email, _domain(email), self._extra(email, idempotency_key))

    def _send_one(self, email: OutgoingEmail, idempotency_key: str, mail_from: str | None = None) -> None:
        """Raises _Retry for a transient refusal, returns normally when accepted.

        `mail_from`: this message's envelope sender (None: the From address)."""
        data = self.wire(email, idempotency_key)
        for reconnect in (False, True):
            conn = self._connection()
            try:
                if data is not None:
                    refused = conn.sendmail(mail_from or data.sender, data.rcpts, data.data)
                else:
                    refused = conn.send_message(self.message(email, idempotency_key), from_addr=mail_from)
            except smtplib.SMTPNotSupportedError:
                # smtplib refuses before MAIL FROM (the connection stays usable): this address alone fails.
                raise _Rejected(
                    "the address needs SMTPUTF8 (non-ASCII characters before the @) and the server "
                    "does not offer it; only this message is refused"
                ) from None
            except smtplib.SMTPServerDisconnected:
                # An idle connection closed by the server fails on MAIL FROM, before any data: safe to redo once.
                self._drop()
                if reconnect:
                    raise _Retry("the server closed the connection") from None
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                if 400 <= code < 500:
                    raise _Retry(f"{code} {_text(text)}") from None
                raise _Rejected(f"{code} {_text(text)}") from None
            except smtplib.SMTPSenderRefused as exc:
                if 400 <= exc.smtp_code < 500:
                    raise _Retry(f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
                raise ProviderRefusal(
                    f"{self._where()} refused the sender {exc.sender}: {exc.smtp_code} "
                    f"{_text(exc.smtp_error)}; check sender.from_email"
                ) from None
            except smtplib.SMTPResponseException as exc:
                self._reset()
                if 400 <= exc.smtp_code < 500:
                    raise _Retry(f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
                raise _Rejected(f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                raise _Retry(f"{type(exc).__name__}: {exc}") from None
            if refused:
                code, text = next(iter(refused.values()))
                raise _Rejected(f"{code} {_text(text)}")
            return

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        """One connection per batch in flight, taken from the idle ones and given back after."""
        with self._open_lock:
            self._local.conn = self._idle.pop() if self._idle else None
        try:
            return self._send_batch(emails, idempotency_key, on_result)
        finally:
            conn, self._local.conn = self._conn, None
            if conn is not None:
                with self._open_lock:
                    if conn in self._open:
                        self._idle.append(conn)

    def _send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, on_result: OnResult | None
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for i, email in enumerate(emails):
            try:
                self._send_one(email, idempotency_key, self.verp.address(email.key, email.to) if self.verp else None)
            except _Rejected as exc:
                results.append(SendResult(ok=False, error=f"refused by {self._where()}: {exc}"[:2000]))
                if on_result is not None:
                    on_result(i, results[-1])
            except (_Retry, TransientError, ProviderRefusal) as exc:
                if not results:
                    if isinstance(exc, (ProviderRefusal, TransientError)):
                        raise
                    raise TransientError(f"{self._where()}: {exc}") from None
                # Report what went out; the rest is retried (and a refusal then stops the send).
                where = "" if isinstance(exc, (ProviderRefusal, TransientError)) else f"{self._where()}: "
                reason = f"not sent yet: {where}{exc}"[:2000]
                results.extend(SendResult(ok=False, error=reason, retry=True) for _ in emails[i:])
                return results
            else:
                results.append(SendResult(ok=True, provider_id=f"smtp:{email.key}"[:100]))
                if on_result is not None:
                    on_result(i, results[-1])
        return results

    def close(self) -> None:
        """Quit every thread's connection (called once the sending threads are done)."""
        with self._open_lock:
            conns, self._open, self._idle = list(self._open), set(), []
        self._local = threading.local()
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                try:
                    conn.close()
                except OSError:
                    pass


class _Rejected(Exception):
    """The server refused this message for good (5xx): recorded on its delivery."""


def _domain(email: OutgoingEmail) -> str:
    return from_domain(email.from_addr)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
