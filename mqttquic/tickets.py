"""TLS session tickets on disk, for 0-RTT reconnects.

One JSON file holds one entry per server and trust: ``host:port:server_name#trust``,
where *trust* is ``TLSMaterial.trust_id`` (verification, CA certificates, server
name, ALPN, client certificate). TLS 1.3 resumption does not check the server's
certificate again, so a ticket is offered only under the trust that earned it: one
earned without verification, under another CA or as another client certificate is
never used by this connection (INFO, full handshake). Each ticket is
stored as explicit fields (bytes in base64, times in ISO 8601): no pickle, so a
tampered file cannot run code. Writes are atomic (a temporary file renamed over
the old one) with mode 0600. An expired entry is ignored; a corrupt or
unreadable file is logged and replaced, never fatal: the next connection simply
does a full handshake.

A ticket is a credential: TLS 1.3 resumption authenticates the server by the
ticket's secret, not by its certificate. So a file that another user owns or may
write is ignored (with a warning), as a planted ticket would let a server the
client would otherwise refuse receive its CONNECT and password; a file larger
than any real one is ignored too; and a ticket is used once (``take``). The
file is read and written in worker threads, off the event loop (``save_soon``,
``saved``); a lock keeps the read-modify-write of concurrent connections whole.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import why_untrusted

if TYPE_CHECKING:
    from aioquic.tls import SessionTicket

__all__ = ["TicketStore"]

logger = logging.getLogger("mqttquic.tickets")

_VERSION = 1
# A file holds one small entry per server; anything this large was not written by us.
MAX_FILE_SIZE = 256 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def ticket_to_dict(ticket: SessionTicket) -> dict[str, Any]:
    return {
        "age_add": ticket.age_add,
        "cipher_suite": int(ticket.cipher_suite),
        "not_valid_after": ticket.not_valid_after.isoformat(),
        "not_valid_before": ticket.not_valid_before.isoformat(),
        "resumption_secret": _b64(ticket.resumption_secret),
        "server_name": ticket.server_name,
        "ticket": _b64(ticket.ticket),
        "max_early_data_size": ticket.max_early_data_size,
        "other_extensions": [[kind, _b64(value)] for kind, value in ticket.other_extensions],
    }


def ticket_from_dict(data: dict[str, Any]) -> SessionTicket:
    from aioquic.tls import CipherSuite, SessionTicket

    return SessionTicket(
        age_add=int(data["age_add"]),
        cipher_suite=CipherSuite(int(data["cipher_suite"])),
        not_valid_after=datetime.datetime.fromisoformat(data["not_valid_after"]),
        not_valid_before=datetime.datetime.fromisoformat(data["not_valid_before"]),
        resumption_secret=_unb64(data["resumption_secret"]),
        server_name=str(data["server_name"]),
        ticket=_unb64(data["ticket"]),
        max_early_data_size=data["max_early_data_size"],
        other_extensions=[(int(kind), _unb64(value)) for kind, value in data["other_extensions"]],
    )


class TicketStore:
    """The ticket file of a ConnectionConfig (``session_ticket_file``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        # Writes under way in worker threads (save_soon), kept until done.
        self._writes: set[asyncio.Future[None]] = set()

    def save_soon(self, key: str, ticket: SessionTicket, rtt: float | None = None) -> None:
        """``save`` in a worker thread, off the event loop (aioquic hands the ticket over
        in a callback on the loop); ``saved()`` waits for it."""
        writing = asyncio.get_running_loop().run_in_executor(None, self.save, key, ticket, rtt)
        self._writes.add(writing)
        writing.add_done_callback(self._writes.discard)

    async def saved(self, timeout: float = 2.0) -> None:
        """Wait (at most ``timeout`` s) for the writes under way: the next connect resumes
        from what they write."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout)

    @staticmethod
    def key(host: str, port: int, server_name: str, trust_id: str) -> str:
        """The entry of a server (``host:port:server_name``) under one trust."""
        return f"{host}:{port}:{server_name}#{trust_id}"

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as handle:
                problem = why_untrusted(os.fstat(handle.fileno()))
                if problem:
                    _warn_once("session ticket file %s ignored: %s: full handshake", self.path, problem)
                    return {}
                raw = handle.read(MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("cannot read session ticket file %s (%s): full handshake", self.path, exc)
            return {}
        if len(raw) > MAX_FILE_SIZE:
            _warn_once("session ticket file %s ignored: larger than %d bytes: full handshake",
                       self.path, MAX_FILE_SIZE)
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != _VERSION:
                raise ValueError("not a mqttquic ticket file")
            entries = data["tickets"]
            if not isinstance(entries, dict):
                raise ValueError("'tickets' is not an object")
            return entries
        except (ValueError, KeyError, TypeError) as exc:
            _warn_once("session ticket file %s is corrupt (%s): it will be replaced", self.path,
                       exc)
            return {}

    def load(self, key: str) -> SessionTicket | None:
        """The stored ticket for ``key``, if it is there, readable and not expired."""
        with self._lock:
            entry = self._read().get(key)
        return self._ticket(key, entry)

    def take(self, key: str) -> SessionTicket | None:
        """``load``, and remove the entry: a ticket is offered once (a server may accept
        each only once, and 0-RTT data sent under a reused ticket is easier to replay).
        The connection that uses it stores the server's next ticket."""
        return self.take_resumption(key)[0]

    def take_resumption(self, key: str) -> tuple[SessionTicket | None, float | None]:
        """``take``, with the round-trip time (seconds) the previous connection to this
        server measured, if it was stored with the ticket."""
        with self._lock:
            entries = self._read()
            entry = entries.pop(key, None)
            if entry is not None:
                self._write(entries)
        if entry is None:
            server = key.partition("#")[0]
            if any(other.partition("#")[0] == server for other in entries):
                logger.info("session ticket for %s was earned under other trust settings"
                            " (verification, CA, server name or client certificate): not used,"
                            " full handshake", server)
        rtt = entry.get("path_rtt") if isinstance(entry, dict) else None
        if not isinstance(rtt, (int, float)) or not 0 < rtt < 60:
            rtt = None
        return self._ticket(key, entry), rtt

    def _ticket(self, key: str, entry: Any) -> SessionTicket | None:
        if entry is None:
            return None
        try:
            ticket = ticket_from_dict(entry)
        except (ValueError, KeyError, TypeError) as exc:
            _warn_once("session ticket for %s is corrupt (%s): full handshake", key, exc)
            return None
        now = datetime.datetime.now(datetime.UTC)
        if ticket.not_valid_after <= now:
            logger.info("session ticket for %s expired at %s: full handshake", key,
                        ticket.not_valid_after.isoformat())
            return None
        return ticket

    def save(self, key: str, ticket: SessionTicket, rtt: float | None = None) -> None:
        """Store ``ticket`` for ``key`` (atomically, mode 0600); expired entries are dropped.
        ``rtt``: the path's round-trip time in seconds, for the next connect's timers.

        An untrusted file is replaced by one of ours."""
        with self._lock:
            entries = self._read()
            now = datetime.datetime.now(datetime.UTC)
            for other, entry in list(entries.items()):
                try:
                    if datetime.datetime.fromisoformat(entry["not_valid_after"]) <= now:
                        del entries[other]
                except (KeyError, TypeError, ValueError):
                    del entries[other]
            entries[key] = ticket_to_dict(ticket)
            if rtt is not None:
                entries[key]["path_rtt"] = round(rtt, 6)
            self._write(entries)

    def _write(self, entries: dict[str, Any]) -> None:
        payload = json.dumps({"version": _VERSION, "tickets": entries}, indent=1, sort_keys=True)
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
            try:
                if hasattr(os, "fchmod"):  # mkstemp already creates 0600 files
                    os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            logger.warning("cannot write session ticket file %s: %s", self.path, exc)


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    """A ticket problem is the same at every connect until the file is replaced: warn
    about it once per process, then keep it to the debug log."""
    text = message % args
    logger.log(logging.DEBUG if text in _warned else logging.WARNING, "%s", text)
    _warned.add(text)
