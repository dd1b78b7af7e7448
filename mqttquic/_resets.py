"""QUIC stateless resets (RFC 9000, section 10.3), which aioquic does not do.

A server that lost a connection's state (it restarted) cannot close the connection:
it has no keys. Instead it answers a packet for an unknown connection with a
*stateless reset*: a packet that looks like any other and ends with the 16-byte
token the server gave the client with that connection ID. Tokens derived from a
key the gateway keeps across restarts, ``HMAC-SHA256(key, connection ID)``, let a
restarted gateway produce them; a client that sees its token knows the connection
is gone at once, instead of after its idle timeout.

``StatelessResets`` is the server side (issue tokens, answer unknown packets);
``is_stateless_reset`` is the client side's check.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from . import _aioquic

__all__ = ["StatelessResets", "is_stateless_reset", "load_or_create_key"]

logger = logging.getLogger("mqttquic.gateway")

TOKEN_SIZE = 16
# Smallest packet answered: a reset must be shorter than what triggers it (so two
# endpoints cannot ping-pong resets) and at least 22 bytes (RFC 9000, 10.3).
_MIN_TRIGGER = 23
_MAX_RESET = 43


class StatelessResets:
    """Stateless reset tokens from a key, and the resets themselves."""

    def __init__(self, key: bytes | None = None, *, per_second: int = 100) -> None:
        self.key = key if key is not None else os.urandom(32)
        self.per_second = per_second  # an attacker must not turn us into an amplifier
        self._window = 0
        self._sent_in_window = 0
        self.sent = 0

    def token(self, connection_id: bytes) -> bytes:
        return hmac.new(self.key, connection_id, hashlib.sha256).digest()[:TOKEN_SIZE]

    def adopt(self, quic: Any) -> None:
        """Make an aioquic server connection hand out tokens derived from the key (it
        draws random ones), for the connection IDs it has and those it makes later."""

        def use_our_tokens() -> None:
            for connection_id in _aioquic.host_connection_ids(quic):
                if not connection_id.was_sent:
                    connection_id.stateless_reset_token = self.token(connection_id.cid)

        for connection_id in _aioquic.host_connection_ids(quic):
            connection_id.stateless_reset_token = self.token(connection_id.cid)
        _aioquic.on_new_connection_ids(quic, use_our_tokens)

    def reset_for(self, datagram: bytes, cid_length: int) -> bytes | None:
        """The stateless reset answering ``datagram`` (a short-header packet for a
        connection this server does not know), or None when none may be sent."""
        if len(datagram) < _MIN_TRIGGER or datagram[0] & 0x80 or not datagram[0] & 0x40:
            return None  # long header (handshakes), or too short to answer safely
        now = int(time.monotonic())
        if now != self._window:
            self._window, self._sent_in_window = now, 0
        if self._sent_in_window >= self.per_second:
            return None
        self._sent_in_window += 1
        self.sent += 1
        size = min(len(datagram) - 1, _MAX_RESET)
        connection_id = datagram[1:1 + cid_length]
        filler = bytearray(os.urandom(size - TOKEN_SIZE))
        filler[0] = 0x40 | (filler[0] & 0x3F)  # a short header: fixed bit set, long bit clear
        return bytes(filler) + self.token(connection_id)


def is_stateless_reset(datagram: bytes, tokens: Iterable[bytes | None]) -> bool:
    """Whether ``datagram`` ends with one of the server's stateless reset tokens."""
    if len(datagram) < 21 or datagram[0] & 0x80:
        return False
    tail = datagram[-TOKEN_SIZE:]
    return any(token is not None and hmac.compare_digest(tail, token) for token in tokens)


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """The key in ``path``, made (32 random bytes, mode 0600) when the file is missing."""
    try:
        with open(path, "rb") as handle:
            key = handle.read(64)
        if len(key) >= 32:
            return key[:32]
        logger.warning("stateless reset key %s is too short: making a new one", path)
    except FileNotFoundError:
        pass
    key = os.urandom(32)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
