"""The durable outbox file (mqttquic/outbox.py), without sockets: order, bounds, what
survives a killed process, and files that are not ours."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mqttquic.outbox import Outbox, OutboxError, OutboxFull, packet_id_of

from .waits import eventually_sync


def test_messages_come_back_in_order_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    ids = [box.add(f"t/{i % 3}", f"m{i}".encode(), 1 + i % 2, i == 0,
                   {"user_property": [("k", str(i))]} if i == 1 else None) for i in range(5)]
    box.remove(ids[2])
    assert (box.count, box.size) == box.stored() == (4, 8)  # the counts get_stats() reads
    box.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Outbox(path)
    pending = again.pending()
    assert [m.id for m in pending] == [ids[0], ids[1], ids[3], ids[4]]
    assert [(m.topic, m.payload, m.qos, m.retain) for m in pending][:2] == [
        ("t/0", b"m0", 1, True), ("t/1", b"m1", 2, False)]
    assert pending[1].properties == {"user_property": [["k", "1"]]}  # JSON: pairs as lists
    assert again.pending(after=ids[3]) == pending[3:]
    assert again.stored() == (4, 8)
    with pytest.raises(ValueError, match="QoS 1 and 2"):
        again.add("t", b"", 0)


def test_a_full_outbox_refuses_or_drops_the_oldest_when_asked(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "a.db", max_messages=3, max_bytes=100)
    for _ in range(3):
        box.add("t", bytes(10), 1)
    with pytest.raises(OutboxFull, match="holds 3 messages"):
        box.add("t", b"x", 1)
    bytes_bound = Outbox(tmp_path / "b.db", max_bytes=25)
    bytes_bound.add("t", bytes(20), 1)
    with pytest.raises(OutboxFull, match="outbox_max_bytes=25"):
        bytes_bound.add("t", bytes(10), 1)
    dropping = Outbox(tmp_path / "c.db", max_messages=3, drop_oldest=True)
    ids = [dropping.add("t", str(i).encode(), 1) for i in range(5)]
    assert [m.id for m in dropping.pending()] == ids[2:] and dropping.dropped == 2


def test_subscriptions_are_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "s.db")
    box.save_subscription("a/#", 1)
    box.save_subscription("b", 2)
    box.save_subscription("a/#", 2)
    box.forget_subscription("b")
    box.close()
    assert Outbox(tmp_path / "s.db").subscriptions() == [("a/#", 2)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_is_not_ours_is_refused_and_left_alone(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is a text file, not a database\n" * 200)
    before = _digest(garbage)
    with pytest.raises(OutboxError, match="not an SQLite database"):
        Outbox(garbage)
    assert _digest(garbage) == before
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE accounts (name TEXT)")
    before = _digest(foreign)
    with pytest.raises(OutboxError, match="of something else"):
        Outbox(foreign)
    assert _digest(foreign) == before


def test_a_damaged_or_newer_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    for _ in range(200):
        box.add("t", bytes(500), 1)
    box.close()
    with sqlite3.connect(path) as db:  # a later format of ours
        db.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    with pytest.raises(OutboxError, match="format version 3"):
        Outbox(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    data = bytearray(path.read_bytes())
    for offset in range(8192, len(data), 4096):  # every page after the first two, trashed
        data[offset:offset + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxError, match="damaged"):
        Outbox(path)


def test_a_version_1_outbox_is_upgraded_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.add("t/1", b"one", 1)
    box.add("t/2", b"two", 2)
    box.close()
    with sqlite3.connect(path) as db:  # as version 1 wrote it: no released column
        db.execute("ALTER TABLE messages DROP COLUMN released")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
    box = Outbox(path)
    assert [(m.topic, m.payload, m.qos, m.released) for m in box.pending()] == [
        ("t/1", b"one", 1, False), ("t/2", b"two", 2, False)]
    assert box.earlier_run_last_id == 2 and (box.count, box.size) == (2, 6)
    box.write([], [], released=[2])
    assert [m.released for m in box.pending()] == [False, True]
    box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == ("2",)


def test_packet_ids_follow_the_outbox_order_and_wrap() -> None:
    assert [packet_id_of(i) for i in (1, 2, 65535, 65536, 65537)] == [1, 2, 65535, 1, 2]


def test_sync_is_normal_or_full(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'normal' or 'full'"):
        Outbox(tmp_path / "x.db", sync="sometimes")


WRITER = """
import sys
from mqttquic.outbox import Outbox
box = Outbox(sys.argv[1], sync="full")
for i in range(100_000):
    box.add("t", b"x" * 100, 1)
    print(i, flush=True)  # after add() returned: durable
"""


def test_what_add_returned_for_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout is not None
    lines: list[str] = []
    eventually_sync(lambda: len(lines) >= 200 or not lines.append(writer.stdout.readline()), 30)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    confirmed = int(lines[-1]) + 1
    box = Outbox(path)  # opens: not damaged
    count, _ = box.stored()
    assert count >= confirmed  # every add that returned is there (one more may be)
    assert [m.id for m in box.pending(limit=count)] == list(range(1, count + 1))
