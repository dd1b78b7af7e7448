"""The gateway's packet framer, socket-free: sizes enforced, PINGRESPs taken out."""

from __future__ import annotations

import random

import pytest

from mqttquic import codec
from mqttquic._framing import Framer
from mqttquic.codec import Pingresp, Puback, Publish
from mqttquic.errors import MalformedPacket, PacketTooLarge

PINGRESP = 13


def test_bytes_pass_unchanged_when_nothing_is_dropped() -> None:
    data = codec.encode(Publish("a/b", b"x" * 300, 1, packet_id=5)) + codec.encode(Puback(5))
    framer = Framer(1024)
    assert framer.feed(data) is data


@pytest.mark.parametrize("seed", range(20))
def test_pingresps_are_taken_out_however_the_stream_is_cut(seed: int) -> None:
    rng = random.Random(seed)
    packets = [Publish("t", bytes(rng.randrange(200)), 1, packet_id=i + 1) if i % 3 else Pingresp()
               for i in range(30)]
    encoded = [codec.encode(p) for p in packets]
    data = b"".join(encoded)
    wanted = b"".join(e for p, e in zip(packets, encoded) if not isinstance(p, Pingresp))
    # Cut anywhere except inside a PINGRESP: brokers send its two bytes whole.
    inside_ping, offset = set(), 0
    for p, e in zip(packets, encoded):
        if isinstance(p, Pingresp):
            inside_ping.add(offset + 1)
        offset += len(e)
    cuts = sorted({c for c in (rng.randrange(1, len(data)) for _ in range(60))} - inside_ping)
    framer = Framer(1024, drop=PINGRESP)
    out = b"".join(framer.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)]))
    assert framer.dropped == 10
    assert out == wanted


def test_only_the_owed_packets_are_taken_out() -> None:
    # The gateway owes itself one PINGRESP per PINGREQ it sent; a client's own passes.
    ping = codec.encode(Pingresp())
    framer = Framer(1024, drop=PINGRESP, owed=0)
    assert framer.feed(ping) == ping  # owed nothing: the client's own
    framer.owed += 1
    assert framer.feed(ping + ping) == ping and framer.owed == 0 and framer.dropped == 1


def test_a_dropped_packet_with_a_body_across_chunks() -> None:
    # Not a PINGRESP (which has no body), but the same rule: what it spans goes.
    body = codec.encode(Publish("t", b"z" * 50))
    framer = Framer(1024, drop=3)
    keep = codec.encode(Puback(1))
    assert framer.feed(keep + body[:10]) == keep
    assert framer.feed(body[10:30]) == b""
    assert framer.feed(body[30:] + keep) == keep


def test_a_packet_above_the_maximum_is_refused_at_its_header() -> None:
    framer = Framer(1000)
    # CONNECT announcing 200 MB: refused from the first 5 bytes, before any body arrives.
    header = b"\x10" + codec.encode_varint(200_000_000)
    with pytest.raises(PacketTooLarge, match="200000005 bytes exceeds the maximum of 1000"):
        framer.feed(header)
    ok = Framer(1000)
    ok.feed(codec.encode(Publish("t", b"x" * 900)))


def test_a_header_split_byte_by_byte_still_counts() -> None:
    framer = Framer(100)
    data = codec.encode(Publish("t", b"x" * 200))
    with pytest.raises(PacketTooLarge):
        for i in range(len(data)):
            framer.feed(data[i:i + 1])


def test_a_remaining_length_of_five_bytes_is_malformed() -> None:
    with pytest.raises(MalformedPacket, match="longer than 4 bytes"):
        Framer(1 << 30).feed(b"\x30\xff\xff\xff\xff\x01")
