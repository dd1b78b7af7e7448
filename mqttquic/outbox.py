"""A durable outbox: QoS 1/2 messages kept on disk until the broker acknowledges them.

One SQLite file (the standard library's ``sqlite3``) in WAL mode, mode 0600. A message
is written before it is sent and removed when its PUBACK/PUBCOMP arrives, so a device
that reboots, or stays offline for hours, sends it after restarting. ``sync`` is the
power-loss guarantee: "full" makes each write durable before ``add()`` returns
(``synchronous=FULL``: an fsync per commit); "normal" (WAL's ``synchronous=NORMAL``)
survives a crash of the process but may lose the last writes to a power cut.

The file is this module's alone: one that is not an SQLite database, or an SQLite
database of something else, or a damaged one, is refused with ``OutboxError`` and
left as it is, never replaced.

No asyncio here: the client calls it from a worker thread (every call is a short
transaction).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MQTTQUICError

__all__ = ["Outbox", "OutboxError", "OutboxFull", "StoredMessage", "packet_id_of"]

FORMAT = "mqttquic-outbox"
VERSION = 2  # 2: messages.released (a QoS 2 message's PUBREC came)

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " properties TEXT, stored_at REAL NOT NULL, released INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE subscriptions (topic_filter TEXT PRIMARY KEY, qos INTEGER NOT NULL)",
)


class OutboxError(MQTTQUICError):
    """The outbox file cannot be used: not ours, damaged, or not writable."""


class OutboxFull(MQTTQUICError):
    """The outbox holds ``max_messages`` messages or ``max_bytes`` bytes already."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message waiting in the outbox, in the order it was stored (``id``)."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any] | None
    released: bool = False  # QoS 2: the broker's PUBREC came (it owns the message)

    @property
    def packet_id(self) -> int:
        """The message's own MQTT packet identifier, from its place in the outbox: a
        persistent session sends it again under the same one after a restart."""
        return packet_id_of(self.id)


def packet_id_of(message_id: int) -> int:
    """1..65535 from an outbox id: messages stored one after another get different ones
    (the broker's Receive Maximum keeps fewer than 65,535 in flight)."""
    return (message_id - 1) % 0xFFFF + 1


class Outbox:
    """The outbox file of one client."""

    def __init__(self, path: str | os.PathLike[str], *, sync: str = "normal",
                 max_messages: int = 100_000, max_bytes: int = 64 * 1024 * 1024,
                 drop_oldest: bool = False) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"outbox_sync must be 'normal' or 'full', not {sync!r}")
        self.path = os.fspath(path)
        self.sync = sync
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.drop_oldest = drop_oldest
        self.dropped = 0  # messages dropped to make room (drop_oldest)
        self._lock = threading.Lock()  # one connection, used from worker threads
        self._db = self._open()
        # Kept by each write, for get_stats() without a query on the event loop.
        self.count, self.size = self.stored()
        # Messages up to this id were stored by an earlier run, which may have sent them.
        self.earlier_run_last_id: int = self._db.execute(
            "SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]

    # --- the file --------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        created = not os.path.exists(self.path)
        if created:
            try:  # mode 0600 from the start: never readable by others, not even briefly
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as exc:
                raise OutboxError(f"outbox {self.path}: cannot create it: {exc}") from exc
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open it: {exc}") from exc
        try:
            self._check(db, created)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise OutboxError(f"outbox {self.path}: not an SQLite database, or damaged"
                              f" ({exc}); it is left as it is") from exc
        except OutboxError:
            db.close()
            raise
        return db

    def _check(self, db: sqlite3.Connection, created: bool) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if created or not tables:
            with db:
                db.execute("BEGIN")
                for statement in _SCHEMA:
                    db.execute(statement)
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [("format", FORMAT), ("version", str(VERSION))])
            return
        meta = dict(db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise OutboxError(f"outbox {self.path}: an SQLite database of something else"
                              " (not an mqttquic outbox); it is left as it is")
        if meta.get("version") == "1":  # version 1 lacked messages.released
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ALTER TABLE messages ADD COLUMN released INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(VERSION),))
            meta["version"] = str(VERSION)
        if meta.get("version") != str(VERSION):
            raise OutboxError(f"outbox {self.path}: format version {meta.get('version')},"
                              f" this mqttquic reads {VERSION}")
        [verdict] = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise OutboxError(f"outbox {self.path}: damaged ({verdict}); it is left as it is")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- messages ----------------------------------------------------------------------------

    def add(self, topic: str, payload: bytes, qos: int, retain: bool = False,
            properties: dict[str, Any] | None = None) -> int:
        """Store a message (durably, as ``sync`` says) and return its id. OutboxFull
        when it does not fit, unless ``drop_oldest`` makes room (counted in
        ``dropped``)."""
        [result] = self.write([(topic, payload, qos, retain, properties)], [])
        if isinstance(result, OutboxFull):
            raise result
        return result

    def write(self, adds: list[tuple[str, bytes, int, bool, dict[str, Any] | None]],
              removes: list[int], released: Sequence[int] = ()) -> list[int | OutboxFull]:
        """Remove the acknowledged ``removes``, mark the ``released`` (their PUBREC
        came) and store ``adds``, in one transaction (one commit, one fsync with sync
        "full", for many messages): for each add its id, or the OutboxFull it met."""
        for add in adds:
            if add[2] not in (1, 2):
                raise ValueError("the outbox keeps QoS 1 and 2 messages only")
        results: list[int | OutboxFull] = []
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in removes])
            self._db.executemany("UPDATE messages SET released = 1 WHERE id = ?",
                                 [(i,) for i in released])
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
            for topic, payload, qos, retain, properties in adds:
                count, size, full = self._make_room(count, size, len(payload))
                if full is not None:
                    results.append(full)
                    continue
                cursor = self._db.execute(
                    "INSERT INTO messages (topic, payload, qos, retain, properties, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (topic, payload, qos, int(retain),
                                                   json.dumps(properties) if properties else None,
                                                   time.time()))
                assert cursor.lastrowid is not None
                results.append(cursor.lastrowid)
                count, size = count + 1, size + len(payload)
        self.count, self.size = count, size
        return results

    def _make_room(self, count: int, size: int, needed: int) -> tuple[int, int, OutboxFull | None]:
        while count >= self.max_messages or size + needed > self.max_bytes:
            if not self.drop_oldest or not count:
                return count, size, OutboxFull(
                    f"the outbox holds {count} messages, {size} bytes (outbox_max_messages="
                    f"{self.max_messages}, outbox_max_bytes={self.max_bytes})")
            oldest_id, oldest_size = self._db.execute(
                "SELECT id, length(payload) FROM messages ORDER BY id LIMIT 1").fetchone()
            self._db.execute("DELETE FROM messages WHERE id = ?", (oldest_id,))
            self.dropped += 1
            count, size = count - 1, size - oldest_size
        return count, size, None

    def remove(self, message_id: int) -> None:
        """The broker acknowledged the message: forget it."""
        self.write([], [message_id])  # which keeps ``count`` and ``size`` right

    def pending(self, after: int = 0, limit: int = 1000) -> list[StoredMessage]:
        """Stored messages with an id above ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, properties, released FROM messages"
                " WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [StoredMessage(row[0], row[1], bytes(row[2]), row[3], bool(row[4]),
                              json.loads(row[5]) if row[5] else None, bool(row[6]))
                for row in rows]

    def stored(self) -> tuple[int, int]:
        """How many messages wait, and their payload bytes."""
        with self._lock:
            count, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM messages").fetchone()
        return int(count), int(size)

    # --- subscriptions ------------------------------------------------------------------------

    def save_subscription(self, topic_filter: str, qos: int) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?)",
                             (topic_filter, qos))

    def forget_subscription(self, topic_filter: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM subscriptions WHERE topic_filter = ?", (topic_filter,))

    def subscriptions(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(row[0], int(row[1])) for row in
                    self._db.execute("SELECT topic_filter, qos FROM subscriptions ORDER BY rowid")]
