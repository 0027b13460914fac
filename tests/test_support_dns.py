"""The local DNS server the doctor tests start must not fail when its UDP port is busy on TCP.

CI once failed with "Address already in use": the kernel gave LocalDns a UDP port that another
test's TCP socket held. Holding that port on TCP here reproduces it deterministically.
"""

from __future__ import annotations

import socket

import dns.resolver
import pytest

from tests import support_dns


def test_a_port_busy_on_tcp_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[socket.socket] = []
    real = support_dns.DNSServer

    def first_port_taken(*args: object, **kwargs: object) -> object:
        if kwargs.get("tcp") and not held:
            busy = socket.socket()
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
            busy.bind(("127.0.0.1", int(kwargs["port"])))  # type: ignore[call-overload]
            busy.listen()
            held.append(busy)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(support_dns, "DNSServer", first_port_taken)
    try:
        with support_dns.LocalDns({"example.org": ["v=spf1 -all"]}) as local:
            assert local.port != held[0].getsockname()[1]
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers, resolver.port = ["127.0.0.1"], local.port
            answer = resolver.resolve("example.org", "TXT", tcp=True, lifetime=5)
            assert [b"".join(r.strings) for r in answer] == [b"v=spf1 -all"]
    finally:
        for sock in held:
            sock.close()
