"""StreamDecoder: reassembly across arbitrary chunk boundaries."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from mqttquic.errors import MalformedPacket

from .test_golden import CASES


@pytest.mark.parametrize(("version", "golden"), [(c[1], c[3]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_every_prefix_is_incomplete(codec: ModuleType, version: int, golden: bytes) -> None:
    for cut in range(len(golden)):
        decoder = codec.StreamDecoder(version)
        assert decoder.feed(golden[:cut]) == []
        assert decoder.buffered == cut
        packets = decoder.feed(golden[cut:])
        assert len(packets) == 1
        assert decoder.buffered == 0
        assert codec.encode(packets[0], version) == golden


def _stream(codec: ModuleType, version: int) -> tuple[bytes, list[object]]:
    packets = [case[2](codec) for case in CASES
               if case[1] == version and not case[0].startswith(("connect", "v5-connect"))]
    big = codec.Publish("big/payload", bytes(range(256)) * 300, qos=1, packet_id=77)
    packets = (packets + [big]) * 3
    return b"".join(codec.encode(p, version) for p in packets), packets


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("seed", range(8))
def test_random_chunkings_give_the_same_packets(codec: ModuleType, version: int,
                                                seed: int) -> None:
    data, expected = _stream(codec, version)
    assert codec.StreamDecoder(version).feed(data) == expected
    rng = random.Random(seed)
    decoder = codec.StreamDecoder(version)
    got: list[object] = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, rng.randint(1, 64), rng.randint(1, 5000)])
        got += decoder.feed(data[pos:pos + step])
        pos += step
    assert got == expected
    assert decoder.buffered == 0


def test_accepts_bytearray_and_memoryview(codec: ModuleType) -> None:
    data = codec.encode_publish("a/b", b"hi") * 3
    assert len(codec.StreamDecoder().feed(bytearray(data))) == 3
    decoder = codec.StreamDecoder()
    assert decoder.feed(memoryview(data)[:4]) == []
    assert len(decoder.feed(memoryview(data)[4:])) == 3


def test_connect_sets_the_protocol_version(codec: ModuleType) -> None:
    decoder = codec.StreamDecoder(4)
    connect = codec.encode(codec.Connect("c", protocol_version=5))
    publish = codec.encode(codec.Publish("a", b"x", properties={"content_type": "t"}), 5)
    packets = decoder.feed(connect + publish)
    assert decoder.protocol_version == 5
    assert packets[1].properties == {"content_type": "t"}


def test_large_packet_in_small_chunks(codec: ModuleType) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = codec.encode_publish("big", payload, qos=2, packet_id=9)
    decoder = codec.StreamDecoder(max_packet_size=2 * len(data))
    for pos in range(0, len(data) - 1000, 1000):
        assert decoder.feed(data[pos:pos + 1000]) == []
    [packet] = decoder.feed(data[pos + 1000:])
    assert packet.payload == payload and packet.packet_id == 9
    assert decoder.buffered == 0


def test_payload_is_a_copy_not_a_view_of_the_buffer(codec: ModuleType) -> None:
    decoder = codec.StreamDecoder()
    data = bytearray(codec.encode_publish("a", b"hello"))
    [packet] = decoder.feed(data)
    data[-5:] = b"XXXXX"
    assert packet.payload == b"hello" and type(packet.payload) is bytes


def test_repeated_and_changing_topics(codec: ModuleType) -> None:
    # Decoders remember the last topic; a topic of the same length must not match it.
    topics = ["a/b", "a/c", "a/b", "a/b", "ü/b", "a/b"]
    data = b"".join(codec.encode_publish(t, b"x") for t in topics)
    decoder = codec.StreamDecoder()
    assert [p.topic for p in decoder.feed(data)] == topics
    with pytest.raises(MalformedPacket, match=r"\[MQTT-3.3.2-2\]"):
        decoder.feed(b"\x30\x06\x00\x03a/+x")


def test_encoder_validates_each_new_topic(codec: ModuleType) -> None:
    topic = "a/b"
    assert codec.encode_publish(topic, b"") == b"\x30\x05\x00\x03a/b"
    assert codec.encode_publish(topic, b"") == b"\x30\x05\x00\x03a/b"
    for bad in ("a/+", "a/#", "a\x00", ""):
        with pytest.raises(MalformedPacket):
            codec.encode_publish(bad, b"")
    assert codec.encode_publish("ü", b"") == b"\x30\x04\x00\x02\xc3\xbc"
