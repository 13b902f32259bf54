"""A real authoritative DNS server on loopback for the deliverability tests (dnslib, UDP + TCP).

Zones are plain data: ``{name: [(type, value), ...]}`` with types A, AAAA, MX (``"10 mx.x"``),
TXT (a string; longer than 255 octets it is sent as several strings, as DNS requires) and
CNAME. A name not in the zone gets NXDOMAIN; a known name without the asked type an empty
NOERROR answer. Records can be changed while the server runs (``server.set(name, records)``).

Example::

    with DnsServer({"shop.example": [("MX", "10 mx.shop.example")]}) as server:
        server.nameserver   # "127.0.0.1:PORT", for --nameserver / nk.preflight
"""

from __future__ import annotations

import threading
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSServer

from tests.mailservers import HOST, free_port

Records = list[tuple[str, str]]


class _QuietLogger:
    """dnslib logs every packet to stdout by default."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _rdata(rtype: str, value: str) -> Any:
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        preference, exchange = value.split()
        return MX(exchange, int(preference))
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "TXT":
        data = value.encode()
        return TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])
    raise ValueError(f"unsupported record type {rtype}")


class _ZoneResolver(BaseResolver):
    def __init__(self, zone: dict[str, Records]):
        self.zone = {DNSLabel(name.lower()): list(records) for name, records in zone.items()}
        self.lock = threading.Lock()
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname, qtype = request.q.qname, QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((str(qname).rstrip(".").lower(), qtype))
            records = self.zone.get(DNSLabel(str(qname).lower()))
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in records:
            if rtype == qtype or (rtype == "CNAME" and qtype != "CNAME"):
                reply.add_answer(RR(qname, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=60))
        return reply


class DnsServer:
    """dnslib serving ``zone`` on 127.0.0.1:PORT over UDP and TCP, in threads of this process."""

    def __init__(self, zone: dict[str, Records], port: int | None = None):
        self.port = port or free_port()
        self.resolver = _ZoneResolver(zone)
        self._servers = [
            DNSServer(self.resolver, port=self.port, address=HOST, logger=_QuietLogger(), tcp=tcp)
            for tcp in (False, True)
        ]

    @property
    def nameserver(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Every (name, type) asked so far."""
        with self.resolver.lock:
            return list(self.resolver.queries)

    def set(self, name: str, records: Records) -> None:
        """Replace the records of ``name`` (an empty list: the name exists with no records)."""
        with self.resolver.lock:
            self.resolver.zone[DNSLabel(name.lower())] = list(records)

    def start(self) -> DnsServer:
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
