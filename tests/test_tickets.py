"""The session ticket file: explicit fields, atomic 0600 writes, expiry, corruption."""

from __future__ import annotations

import datetime
import json
import logging
import stat
import uuid
from pathlib import Path

import pytest
from aioquic.tls import CipherSuite, SessionTicket

from mqttquic.tickets import TicketStore


def make_ticket(valid_for: datetime.timedelta = datetime.timedelta(hours=1),
                label: bytes = b"ticket-1") -> SessionTicket:
    now = datetime.datetime.now(datetime.UTC)
    return SessionTicket(age_add=12345, cipher_suite=CipherSuite.AES_128_GCM_SHA256,
                         not_valid_after=now + valid_for, not_valid_before=now,
                         resumption_secret=b"\x01" * 32, server_name="localhost", ticket=label,
                         max_early_data_size=0xFFFFFFFF, other_extensions=[(42, b"\x00\xff")])


def test_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / ".mqtt_session_ticket"
    store = TicketStore(path)
    ticket = make_ticket()
    store.save("h:1:localhost", ticket)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load("h:1:localhost") == ticket
    assert store.load("h:2:localhost") is None
    # Explicit fields, readable JSON: no pickle anywhere.
    data = json.loads(path.read_text())
    assert data["tickets"]["h:1:localhost"]["server_name"] == "localhost"
    assert not list(path.parent.glob(".*.tmp*"))


def test_one_entry_per_server(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t")
    store.save("a:1:x", make_ticket(label=b"a"))
    store.save("b:1:x", make_ticket(label=b"b"))
    store.save("a:1:x", make_ticket(label=b"a2"))
    assert store.load("a:1:x").ticket == b"a2"  # type: ignore[union-attr]
    assert store.load("b:1:x").ticket == b"b"  # type: ignore[union-attr]


def test_expired_tickets_are_ignored_and_dropped(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t")
    store.save("old:1:x", make_ticket(datetime.timedelta(seconds=-1)))
    assert store.load("old:1:x") is None
    store.save("new:1:x", make_ticket())
    assert "old:1:x" not in json.loads((tmp_path / "t").read_text())["tickets"]


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"version": 1}',
                                     b'{"version": 1, "tickets": {"h:1:x": {"ticket": "%%%"}}}',
                                     b"\xff\xfe\x00"])
def test_corrupt_file_means_full_handshake_then_replaced(tmp_path: Path, content: bytes,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t"
    path.write_bytes(content)
    store = TicketStore(path)
    with caplog.at_level(logging.WARNING, logger="mqttquic.tickets"):
        assert store.load("h:1:x") is None
    if content:
        assert "corrupt" in caplog.text or "cannot read" in caplog.text
    ticket = make_ticket()
    store.save("h:1:x", ticket)
    assert store.load("h:1:x") == ticket


def test_unwritable_location_is_logged_not_raised(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = TicketStore(blocker / "t")  # a folder that cannot exist
    with caplog.at_level(logging.WARNING, logger="mqttquic.tickets"):
        store.save("h:1:x", make_ticket())
    assert "cannot write" in caplog.text


def test_a_ticket_is_offered_once(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t")
    ticket = make_ticket()
    store.save("h:1:localhost", ticket)
    store.save("h:2:localhost", make_ticket(label=b"other"))
    assert store.take("h:1:localhost") == ticket
    assert store.take("h:1:localhost") is None
    assert store.load("h:2:localhost") is not None  # other servers' tickets stay


def test_the_paths_rtt_is_kept_with_the_ticket(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t")
    ticket = make_ticket()
    store.save("h:1:localhost", ticket, rtt=0.0523)
    assert store.take_resumption("h:1:localhost") == (ticket, 0.0523)
    assert store.take_resumption("h:1:localhost") == (None, None)
    store.save("h:1:localhost", ticket)  # no RTT measured
    assert store.take_resumption("h:1:localhost") == (ticket, None)
    path = tmp_path / "t"
    store.save("h:1:localhost", ticket, rtt=0.05)
    data = json.loads(path.read_text())
    data["tickets"]["h:1:localhost"]["path_rtt"] = "fast"  # nonsense is ignored
    path.write_text(json.dumps(data))
    assert store.take_resumption("h:1:localhost") == (ticket, None)


def test_a_corrupt_ticket_is_one_warning_not_one_per_connect(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = f"h:1:{uuid.uuid4().hex}"
    path = tmp_path / "t"
    path.write_bytes(b'{"version": 1, "tickets": {"%s": {"ticket": "%%%%%%"}}}' % key.encode())
    store = TicketStore(path)
    with caplog.at_level(logging.DEBUG, logger="mqttquic.tickets"):
        for _ in range(3):
            assert store.load(key) is None
    assert [r.levelno for r in caplog.records if "corrupt" in r.getMessage()] == [
        logging.WARNING, logging.DEBUG, logging.DEBUG]
