"""Malformed input raises MalformedPacket naming the problem and the rule."""

from __future__ import annotations

from types import ModuleType

import pytest

from mqttquic.errors import MalformedPacket, PacketTooLarge

BAD: list[tuple[str, int, bytes, str]] = [
    ("reserved-type-0", 4, b"\x00\x00", r"type 0 is reserved"),
    ("publish-qos3", 4, b"\x36\x03\x00\x01a", r"QoS 3 \[MQTT-3.3.1-4\]"),
    ("publish-dup-qos0", 4, b"\x38\x03\x00\x01a", r"DUP flag .* \[MQTT-3.3.1-2\]"),
    ("publish-plus-in-topic", 4, b"\x30\x05\x00\x03a/+", r"wildcard .* \[MQTT-3.3.2-2\]"),
    ("publish-hash-in-topic", 4, b"\x30\x03\x00\x01#", r"wildcard .* \[MQTT-3.3.2-2\]"),
    ("publish-nul-in-topic", 4, b"\x30\x03\x00\x01\x00", r"U\+0000 .*\[MQTT-1.5.4-2\]"),
    ("publish-bad-utf8", 4, b"\x30\x04\x00\x02\xc3\x28", r"not valid UTF-8 .*\[MQTT-1.5.4-1\]"),
    ("publish-surrogate", 4, b"\x30\x05\x00\x03\xed\xa0\x80", r"not valid UTF-8"),
    ("publish-empty-topic", 4, b"\x30\x02\x00\x00", r"empty topic name"),
    ("publish-packet-id-0", 4, b"\x32\x05\x00\x01a\x00\x00", r"identifier is 0 \[MQTT-2.2.1-3\]"),
    ("publish-topic-past-end", 4, b"\x30\x03\x00\x05a", r"runs past the end"),
    ("publish-id-past-end", 4, b"\x32\x04\x00\x01a\x00", r"runs past the end"),
    ("puback-flags", 4, b"\x41\x02\x00\x01", r"flags are 0x1, must be 0x0 \[MQTT-2.2.2-2\]"),
    ("pubrel-flags", 4, b"\x60\x02\x00\x01", r"flags are 0x0, must be 0x2 \[MQTT-2.2.2-2\]"),
    ("subscribe-flags", 4, b"\x80\x06\x00\x01\x00\x01a\x00", r"\[MQTT-2.2.2-2\]"),
    ("puback-trailing", 4, b"\x40\x03\x00\x01\x00", r"1 trailing bytes after the PUBACK"),
    ("puback-id-0", 4, b"\x40\x02\x00\x00", r"identifier is 0"),
    ("puback-short", 4, b"\x40\x01\x00", r"runs past the end"),
    ("pingreq-body", 4, b"\xc0\x01\x00", r"trailing bytes after the PINGREQ"),
    ("connect-reserved-flag", 4, b"\x10\x0f\x00\x04MQTT\x04\x03\x00\x3c\x00\x03cid",
     r"reserved connect flag .*\[MQTT-3.1.2-3\]"),
    ("connect-will-qos3", 4, b"\x10\x13\x00\x04MQTT\x04\x1e\x00\x3c\x00\x01c\x00\x01t\x00\x01p",
     r"will QoS 3"),
    ("connect-will-qos-without-will", 4, b"\x10\x0d\x00\x04MQTT\x04\x0a\x00\x3c\x00\x01c",
     r"\[MQTT-3.1.2-11\]"),
    ("connect-protocol-name", 4, b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c",
     r"unsupported protocol"),
    ("connect-password-without-user", 4,
     b"\x10\x10\x00\x04MQTT\x04\x42\x00\x3c\x00\x01c\x00\x01p", r"\[MQTT-3.1.2-22\]"),
    ("connect-trailing", 4, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01cX", r"trailing"),
    ("connack-reserved", 4, b"\x20\x02\x02\x00", r"\[MQTT-3.2.2-1\]"),
    ("v5-property-not-allowed", 5, b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01",
     r"session_expiry_interval is not allowed on PUBLISH \[MQTT-2.2.2-2\]"),
    ("v5-property-repeated", 5, b"\x30\x0a\x00\x01a\x06\x23\x00\x01\x23\x00\x02",
     r"topic_alias appears more than once"),
    ("v5-unknown-property", 5, b"\x30\x06\x00\x01a\x02\x7f\x00", r"unknown property identifier"),
    ("v5-property-length-past-end", 5, b"\x30\x04\x00\x01a\x05", r"property length 5 runs past"),
    ("v5-property-value-past-end", 5, b"\x30\x06\x00\x01a\x02\x23\x00", r"topic_alias runs past"),
    ("v5-subscription-id-0", 5, b"\x30\x06\x00\x01a\x02\x0b\x00", r"subscription_identifier = 0"),
    ("v5-receive-maximum-0", 5, b"\x20\x06\x00\x00\x03\x21\x00\x00", r"receive_maximum = 0"),
    ("v5-user-property-bad-utf8", 5,
     b"\x30\x0b\x00\x01a\x07\x26\x00\x01\xff\x00\x01v", r"user property name is not valid UTF-8"),
    ("v5-empty-topic-without-alias", 5, b"\x30\x03\x00\x00\x00", r"empty topic name"),
    ("subscribe-no-filters", 4, b"\x82\x02\x00\x01", r"\[MQTT-3.8.3-3\]"),
    ("subscribe-bad-filter", 4, b"\x82\x0a\x00\x01\x00\x05a/#/b\x00", r"\[MQTT-4.7.1-2\]"),
    ("subscribe-partial-plus", 4, b"\x82\x08\x00\x01\x00\x03a+b\x00", r"\[MQTT-4.7.1-3\]"),
    ("subscribe-v4-reserved-options", 4, b"\x82\x06\x00\x01\x00\x01a\x04", r"reserved subscription"),
    ("subscribe-qos3", 4, b"\x82\x06\x00\x01\x00\x01a\x03", r"QoS 3"),
    ("v5-subscribe-retain-handling-3", 5, b"\x82\x07\x00\x01\x00\x00\x01a\x30", r"retain handling 3"),
    ("suback-v4-bad-code", 4, b"\x90\x03\x00\x01\x03", r"return code 0x03 \[MQTT-3.9.3-2\]"),
    ("unsubscribe-no-filters", 4, b"\xa2\x02\x00\x01", r"\[MQTT-3.10.3-2\]"),
    ("unsuback-v4-trailing", 4, b"\xb0\x03\x00\x01\x00", r"trailing"),
    ("auth-in-v4", 4, b"\xf0\x00", r"AUTH\) is reserved in MQTT 3.1.1"),
    ("disconnect-v4-body", 4, b"\xe0\x01\x00", r"trailing"),
    ("length-too-long", 4, b"\x30\xff\xff\xff\xff\x01", r"longer than 4 bytes"),
    ("length-not-minimal", 4, b"\x30\x80\x00", r"minimum number of bytes"),
]


@pytest.mark.parametrize(("version", "data", "reason"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_decode_packet_rejects(codec: ModuleType, version: int, data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        codec.decode_packet(data, version)


@pytest.mark.parametrize(("version", "data", "reason"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_stream_rejects_and_keeps_earlier_packets(codec: ModuleType, version: int, data: bytes,
                                                  reason: str) -> None:
    decoder = codec.StreamDecoder(version)
    good = codec.encode(codec.Publish("ok", b"1"), version)
    with pytest.raises(MalformedPacket, match=reason) as info:
        decoder.feed(good + good + data + good)
    assert info.value.packets == [codec.Publish("ok", b"1")] * 2
    # The stream lost its framing: it stays failed rather than guessing.
    with pytest.raises(MalformedPacket, match="stream already failed"):
        decoder.feed(good)


def test_decode_packet_needs_exactly_one_packet(codec: ModuleType) -> None:
    with pytest.raises(MalformedPacket, match="before the packet does"):
        codec.decode_packet(b"\x30\x05\x00\x01a")
    with pytest.raises(MalformedPacket, match="after the end of the packet"):
        codec.decode_packet(b"\xc0\x00\xc0")
    with pytest.raises(MalformedPacket, match="empty input"):
        codec.decode_packet(b"")
    with pytest.raises(MalformedPacket, match="inside the remaining length"):
        codec.decode_packet(b"\x30\x80")


def test_packet_too_large_is_refused_before_buffering(codec: ModuleType) -> None:
    decoder = codec.StreamDecoder(max_packet_size=100)
    # 1,000-byte body announced: refused from the fixed header alone.
    with pytest.raises(PacketTooLarge, match=r"1003 bytes exceeds the maximum packet size 100"):
        decoder.feed(b"\x30\xe8\x07\x00")
    assert decoder.buffered < 10
    ok = codec.StreamDecoder(max_packet_size=9)
    assert ok.feed(b"\x30\x07\x00\x03a/bhi") == [codec.Publish("a/b", b"hi")]


ENCODE_BAD = [
    ("wildcard-topic", lambda c: c.Publish("a/#"), 4, r"\[MQTT-3.3.2-2\]"),
    ("qos3", lambda c: c.Publish("a", qos=3, packet_id=1), 4, r"QoS 3"),
    ("no-packet-id", lambda c: c.Publish("a", qos=1), 4, r"\[MQTT-2.2.1-3\]"),
    ("packet-id-too-big", lambda c: c.Puback(70000), 4, r"\[MQTT-2.2.1-3\]"),
    ("v5-property-on-v4", lambda c: c.Publish("a", properties={"content_type": "x"}), 4,
     r"need MQTT 5"),
    ("property-wrong-packet", lambda c: c.Publish("a", properties={"receive_maximum": 5}), 5,
     r"not allowed on PUBLISH"),
    ("unknown-property", lambda c: c.Publish("a", properties={"colour": "red"}), 5,
     r"unknown MQTT 5 property 'colour'"),
    ("bad-filter", lambda c: c.Subscribe(1, [c.Subscription("a/#/b")]), 4, r"\[MQTT-4.7.1-2\]"),
    ("no-local-on-v4", lambda c: c.Subscribe(1, [c.Subscription("a", no_local=True)]), 4,
     r"need MQTT 5"),
    ("auth-on-v4", lambda c: c.Auth(), 4, r"AUTH needs MQTT 5"),
    ("surrogate-topic", lambda c: c.Publish("a\udc00"), 4, r"not valid UTF-8"),
    ("nul-client-id", lambda c: c.Connect("a\x00"), 4, r"U\+0000"),
    ("long-string", lambda c: c.Connect("x" * 70000), 4, r"more than 65535"),
]


@pytest.mark.parametrize(("make", "version", "reason"), [e[1:] for e in ENCODE_BAD],
                         ids=[e[0] for e in ENCODE_BAD])
def test_encode_rejects(codec: ModuleType, make, version: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedPacket, match=reason):
        codec.encode(make(codec), version)
