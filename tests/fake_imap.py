"""A small IMAP server in a thread that misbehaves on cue: it trickles its FETCH replies, or
announces one size and sends another.  A real Dovecot cannot be made to do that (the one
exception to "real servers only"; the normal path runs against Dovecot in test_bounce_fetch).

Only what ``bounces fetch`` says is implemented: CAPABILITY, LOGIN, LIST, EXAMINE/SELECT,
UID SEARCH, UID FETCH, NOOP, LOGOUT.  Plain text on 127.0.0.1.

Example::

    with FakeImap({1: raw1, 2: raw2}, liar={2: 600 * 1024 * 1024}) as srv:
        update_bounce_settings(store, host="127.0.0.1", port=srv.port, tls="none",
                               allow_plain_auth=True, user="u@example.org", ...)
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from typing import Any

_CHUNK = 1024 * 1024


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        fake = self.server.fake
        self._send(b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n")
        try:
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
                command, _, args = rest.partition(" ")
                command = command.upper()
                if command == "UID":
                    sub, _, args = args.partition(" ")
                    command = "UID " + sub.upper()
                fake.commands.append(command)
                if command == "LOGOUT":
                    self._send(b"* BYE bye\r\n" + f"{tag} OK done\r\n".encode())
                    return
                handler = getattr(self, "_" + command.lower().replace(" ", "_"), None)
                if handler is None:
                    self._send(f"{tag} OK {command} done\r\n".encode())
                    continue
                handler(tag, args)
        except (ConnectionError, OSError):
            return

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _capability(self, tag: str, args: str) -> None:
        self._send(b"* CAPABILITY IMAP4rev1\r\n" + f"{tag} OK done\r\n".encode())

    def _login(self, tag: str, args: str) -> None:
        fake = self.server.fake
        if fake.trickle_login is not None:
            self._send(f"{tag} OK".encode())
            while not fake.stopping.is_set():    # the rest of the line never comes
                self._send(b".")
                time.sleep(fake.trickle_login)
            raise ConnectionAbortedError
        self._send(f"{tag} OK logged in\r\n".encode())

    def _list(self, tag: str, args: str) -> None:
        self._send(b'* LIST () "/" INBOX\r\n' + f"{tag} OK done\r\n".encode())

    def _examine(self, tag: str, args: str) -> None:
        fake = self.server.fake
        top = max(fake.messages, default=0)
        self._send(f"* {len(fake.messages)} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 77] ok\r\n"
                   f"* OK [UIDNEXT {top + 1}] ok\r\n{tag} OK [READ-ONLY] done\r\n".encode())

    _select = _examine

    def _uid_search(self, tag: str, args: str) -> None:
        fake = self.server.fake
        uids = sorted(fake.messages)
        larger = re.search(r"LARGER (\d+)", args, re.IGNORECASE)
        if larger:
            uids = [u for u in uids if fake.announced(u) > int(larger.group(1))]
        self._send(f"* SEARCH {' '.join(map(str, uids))}\r\n{tag} OK done\r\n".encode())

    def _uid_fetch(self, tag: str, args: str) -> None:
        fake = self.server.fake
        wanted = _uid_set(args.split(" ", 1)[0], max(fake.messages, default=0))
        partial = re.search(r"BODY\.PEEK\[\]<0\.(\d+)>", args, re.IGNORECASE)
        body = re.search(r"BODY\.PEEK\[\]", args, re.IGNORECASE)
        for seq, uid in enumerate(sorted(fake.messages), start=1):
            if uid not in wanted:
                continue
            items = f"UID {uid} RFC822.SIZE {fake.announced(uid)}"
            if not body:
                self._send(f"* {seq} FETCH ({items})\r\n".encode())
                continue
            if uid in fake.liar:           # ignores the range, sends what it likes
                size = fake.liar[uid]
            else:
                size = len(fake.messages[uid])
                if partial:
                    size = min(size, int(partial.group(1)))
            key = "BODY[]<0>" if partial else "BODY[]"
            self._send(f"* {seq} FETCH ({items} {key} {{{size}}}\r\n".encode())
            self._literal(uid, size)
            self._send(b")\r\n")
        self._send(f"{tag} OK fetched\r\n".encode())

    def _literal(self, uid: int, size: int) -> None:
        fake = self.server.fake
        if fake.trickle_every is not None:
            # One byte now and then, each before the client's read timeout: never ends by itself.
            sent = 0
            while sent < size and not fake.stopping.is_set():
                self._send(b"x")
                sent += 1
                time.sleep(fake.trickle_every)
            raise ConnectionAbortedError
        raw = fake.messages[uid]
        if uid not in fake.liar:
            self._send(raw[:size])
            return
        self._send(raw[:size])
        left = size - min(size, len(raw))
        block = b"\0" * _CHUNK
        while left > 0:
            step = min(left, _CHUNK)
            self._send(block[:step])
            left -= step


def _uid_set(text: str, top: int) -> set[int]:
    found: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        first = top if lo == "*" else int(lo)
        last = first if not hi else (top if hi == "*" else int(hi))
        found.update(range(min(first, last), max(first, last) + 1))
    return found


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeImap


class FakeImap:
    """``messages``: {uid: raw}; ``sizes``: {uid: the RFC822.SIZE announced} (default: the
    real size); ``liar``: {uid: literal size sent whatever was asked}; ``trickle_every``:
    seconds between the bytes of every FETCH literal (None: send at once); ``trickle_login``:
    the same for the reply to LOGIN, which never ends."""

    def __init__(self, messages: dict[int, bytes], *, sizes: dict[int, int] | None = None,
                 liar: dict[int, int] | None = None, trickle_every: float | None = None,
                 trickle_login: float | None = None):
        self.messages = messages
        self.sizes = sizes or {}
        self.liar = liar or {}
        self.trickle_every = trickle_every
        self.trickle_login = trickle_login
        self.commands: list[str] = []
        self.stopping = threading.Event()
        self.host = "127.0.0.1"
        self._server = _Server((self.host, 0), _Handler)
        self._server.fake = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def announced(self, uid: int) -> int:
        return self.sizes.get(uid, len(self.messages[uid]))

    def __enter__(self) -> FakeImap:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
