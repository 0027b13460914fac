"""A real DNS server on 127.0.0.1 (dnslib, UDP and TCP) answering TXT records the test sets.

`digest doctor --nameserver 127.0.0.1:<port>` asks it exactly as it would ask the
internet's: dnspython on the wire, long TXT values split into 255-byte strings.
"""

from __future__ import annotations

import socket

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


def _strings(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]


class TxtZone(BaseResolver):
    """name -> TXT values; a name without records answers NXDOMAIN."""

    def __init__(self, records: dict[str, list[str]]):
        self.records = {k.lower().rstrip("."): list(v) for k, v in records.items()}
        self.asked: list[str] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        self.asked.append(name)
        values = self.records.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(_strings(value)), ttl=60))
        return reply


class LocalDns:
    """`with LocalDns({"example.org": ["v=spf1 ..."]}) as dns:` then `--nameserver dns.address`."""

    def __init__(self, records: dict[str, list[str]]):
        self.zone = TxtZone(records)
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self.udp, self.tcp = _pair(self.zone, quiet)
        self.port = self.udp.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalDns:
        self.udp.start_thread()
        self.tcp.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.udp.stop()
        self.tcp.stop()
        self.udp.server.server_close()
        self.tcp.server.server_close()


def _pair(zone: TxtZone, logger: DNSLogger, tries: int = 20) -> tuple[DNSServer, DNSServer]:
    """A UDP and a TCP server on one port. The UDP port the kernel picks may be busy on TCP
    (another test's connection or listener holds it), so pick again rather than fail."""
    for _ in range(tries):
        udp = DNSServer(zone, port=0, address="127.0.0.1", logger=logger)
        port = udp.server.server_address[1]
        try:
            return udp, DNSServer(zone, port=port, address="127.0.0.1", tcp=True, logger=logger)
        except OSError:
            udp.server.server_close()
    raise OSError(f"no port free on both UDP and TCP after {tries} tries")


def silent_port() -> str:
    """A UDP port on 127.0.0.1 where nothing answers (bound and never read), as host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    _SILENT.append(sock)  # kept open for the session: queries sent there wait for the timeout
    return f"127.0.0.1:{sock.getsockname()[1]}"


_SILENT: list[socket.socket] = []
