"""TXT look-ups for the doctor through dnspython, against the system's resolver or a chosen server.

`--nameserver HOST[:PORT]` (or DIGEST_DNS_SERVER) points the look-ups at one server: the
tests' local DNS server, or an authoritative one to see a change before caches do. A server
that does not answer is asked once: the later look-ups say so at once instead of each
waiting for its own timeout.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from digest.errors import UserError

DEFAULT_TIMEOUT = 5.0
_HOST = re.compile(r"[A-Za-z0-9.:_-]+")  # a host name, an IPv4 or (inside brackets) an IPv6 address


class DnsUnavailable(Exception):
    """The DNS server did not answer (timeout, refused, no server configured): nothing is known."""


def parse_nameserver(value: str, where: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT` or `[IPv6]:PORT` → (IP address, port); a clear UserError otherwise."""
    text = value.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise UserError(f"{where}: {value!r} is not HOST[:PORT] (e.g. 127.0.0.1:5353 or [::1]:53)")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{where}: {value!r} is not HOST[:PORT] (e.g. 127.0.0.1:5353 or [::1]:53)")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            address = str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
        except (OSError, UnicodeError):
            raise UserError(f"{where}: {host!r} is neither an IP address nor a host name that resolves") from None
    return address, int(port)


@dataclass
class Dns:
    """TXT records by name; remembers an unreachable server so the doctor stays quick."""

    nameserver: tuple[str, int] | None = None
    timeout: float = DEFAULT_TIMEOUT
    _resolver: dns.resolver.Resolver | None = field(default=None, repr=False)
    _down: str | None = None

    @property
    def server(self) -> str:
        if self.nameserver is None:
            return "the system's DNS resolver"
        host, port = self.nameserver
        return f"{'[' + host + ']' if ':' in host else host}:{port}"

    def _get_resolver(self) -> dns.resolver.Resolver:
        if self._resolver is None:
            if self.nameserver is None:
                try:
                    resolver = dns.resolver.Resolver()
                except dns.resolver.NoResolverConfiguration:
                    raise DnsUnavailable(
                        "no DNS resolver is configured on this machine (/etc/resolv.conf); "
                        "pass --nameserver HOST[:PORT]"
                    ) from None
            else:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [self.nameserver[0]]
                resolver.port = self.nameserver[1]
            resolver.lifetime = self.timeout
            resolver.timeout = self.timeout
            self._resolver = resolver
        return self._resolver

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each one's strings joined; [] when the name or the record is absent."""
        if self._down is not None:
            raise DnsUnavailable(self._down)
        resolver = self._get_resolver()
        try:
            answer = resolver.resolve(dns.name.from_text(name), dns.rdatatype.TXT, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout, OSError) as exc:
            self._down = f"{self.server} did not answer ({_reason(exc)}, asked for {name})"
            raise DnsUnavailable(self._down) from None
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise DnsUnavailable(f"{name}: {exc}") from None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "no answer in time"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "the server refused or failed the query"
    return str(exc) or type(exc).__name__
