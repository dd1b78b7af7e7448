"""Golden bytes, written by hand from the MQTT 3.1.1 and 5.0 specifications.

Each case is encoded by the codec under test and compared byte for byte, then
the bytes are decoded and compared with the packet.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

Case = tuple[str, int, Callable[[Any], Any], bytes]

CASES: list[Case] = [
    # --- MQTT 3.1.1 -----------------------------------------------------------
    ("connect-minimal", 4, lambda c: c.Connect("cid"),
     b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03cid"),
    ("connect-will-user-pass", 4,
     lambda c: c.Connect("cid", username="u", password=b"p", will=c.Will("w/t", b"bye", 1, True)),
     b"\x10\x1f\x00\x04MQTT\x04\xee\x00\x3c\x00\x03cid\x00\x03w/t\x00\x03bye\x00\x01u\x00\x01p"),
    ("connect-persistent-no-keepalive", 4, lambda c: c.Connect("", clean_start=False, keepalive=0),
     b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x00\x00\x00"),
    ("connack-session-present", 4, lambda c: c.Connack(True, 0), b"\x20\x02\x01\x00"),
    ("connack-not-authorized", 4, lambda c: c.Connack(False, 5), b"\x20\x02\x00\x05"),
    ("publish-qos0", 4, lambda c: c.Publish("a/b", b"hi"), b"\x30\x07\x00\x03a/bhi"),
    ("publish-qos1-retain-dup", 4,
     lambda c: c.Publish("a", b"x", qos=1, retain=True, dup=True, packet_id=10),
     b"\x3b\x06\x00\x01a\x00\x0ax"),
    ("publish-qos2-empty", 4, lambda c: c.Publish("a", b"", qos=2, packet_id=0xFFFF),
     b"\x34\x05\x00\x01a\xff\xff"),
    ("puback", 4, lambda c: c.Puback(10), b"\x40\x02\x00\x0a"),
    ("pubrec", 4, lambda c: c.Pubrec(10), b"\x50\x02\x00\x0a"),
    ("pubrel", 4, lambda c: c.Pubrel(10), b"\x62\x02\x00\x0a"),
    ("pubcomp", 4, lambda c: c.Pubcomp(10), b"\x70\x02\x00\x0a"),
    ("subscribe", 4,
     lambda c: c.Subscribe(10, [c.Subscription("a/b", 1), c.Subscription("c", 2)]),
     b"\x82\x0c\x00\x0a\x00\x03a/b\x01\x00\x01c\x02"),
    ("suback", 4, lambda c: c.Suback(10, [1, 0x80]), b"\x90\x04\x00\x0a\x01\x80"),
    ("unsubscribe", 4, lambda c: c.Unsubscribe(10, ["a/b"]), b"\xa2\x07\x00\x0a\x00\x03a/b"),
    ("unsuback", 4, lambda c: c.Unsuback(10), b"\xb0\x02\x00\x0a"),
    ("pingreq", 4, lambda c: c.Pingreq(), b"\xc0\x00"),
    ("pingresp", 4, lambda c: c.Pingresp(), b"\xd0\x00"),
    ("disconnect", 4, lambda c: c.Disconnect(), b"\xe0\x00"),
    # --- MQTT 5.0 ---------------------------------------------------------------
    ("v5-connect-minimal", 5, lambda c: c.Connect("cid", protocol_version=5),
     b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03cid"),
    ("v5-connect-properties", 5,
     lambda c: c.Connect("cid", properties={"session_expiry_interval": 0x78,
                                            "receive_maximum": 20}, protocol_version=5),
     b"\x10\x18\x00\x04MQTT\x05\x02\x00\x3c\x08\x11\x00\x00\x00\x78\x21\x00\x14\x00\x03cid"),
    ("v5-connect-will-properties", 5,
     lambda c: c.Connect("cid", will=c.Will("w/t", b"bye", 1, properties={
         "will_delay_interval": 5, "payload_format_indicator": 1}), protocol_version=5),
     b"\x10\x22\x00\x04MQTT\x05\x0e\x00\x3c\x00\x00\x03cid"
     b"\x07\x18\x00\x00\x00\x05\x01\x01\x00\x03w/t\x00\x03bye"),
    ("v5-connack", 5, lambda c: c.Connack(False, 0), b"\x20\x03\x00\x00\x00"),
    ("v5-connack-properties", 5,
     lambda c: c.Connack(False, 0, {"receive_maximum": 10, "maximum_qos": 1,
                                    "assigned_client_identifier": "x"}),
     b"\x20\x0c\x00\x00\x09\x21\x00\x0a\x24\x01\x12\x00\x01x"),
    ("v5-connack-refused", 5, lambda c: c.Connack(False, 0x86), b"\x20\x03\x00\x86\x00"),
    ("v5-publish-qos0", 5, lambda c: c.Publish("a/b", b"hi"), b"\x30\x08\x00\x03a/b\x00hi"),
    ("v5-publish-properties", 5,
     lambda c: c.Publish("a/b", b"hi", qos=1, packet_id=10, properties={
         "topic_alias": 3, "message_expiry_interval": 60, "user_property": [("k", "v")],
         "content_type": "json"}),
     b"\x32\x20\x00\x03a/b\x00\x0a\x16\x23\x00\x03\x02\x00\x00\x00\x3c"
     b"\x26\x00\x01k\x00\x01v\x03\x00\x04jsonhi"),
    ("v5-publish-alias-only", 5,
     lambda c: c.Publish("", b"", properties={"topic_alias": 1}),
     b"\x30\x06\x00\x00\x03\x23\x00\x01"),
    ("v5-puback", 5, lambda c: c.Puback(10), b"\x40\x02\x00\x0a"),
    ("v5-puback-reason", 5, lambda c: c.Puback(10, 0x10), b"\x40\x03\x00\x0a\x10"),
    ("v5-puback-properties", 5, lambda c: c.Puback(10, 0x80, {"reason_string": "no"}),
     b"\x40\x09\x00\x0a\x80\x05\x1f\x00\x02no"),
    ("v5-pubrec", 5, lambda c: c.Pubrec(10, 0x10), b"\x50\x03\x00\x0a\x10"),
    ("v5-pubrel", 5, lambda c: c.Pubrel(10, 0x92), b"\x62\x03\x00\x0a\x92"),
    ("v5-pubcomp", 5, lambda c: c.Pubcomp(10), b"\x70\x02\x00\x0a"),
    ("v5-subscribe-options", 5,
     lambda c: c.Subscribe(10, [c.Subscription("a/b", 1, no_local=True, retain_as_published=True,
                                               retain_handling=2)],
                           {"subscription_identifier": 7}),
     b"\x82\x0b\x00\x0a\x02\x0b\x07\x00\x03a/b\x2d"),
    ("v5-suback", 5, lambda c: c.Suback(10, [0, 1, 0x87]), b"\x90\x06\x00\x0a\x00\x00\x01\x87"),
    ("v5-unsubscribe", 5, lambda c: c.Unsubscribe(10, ["a/b"]),
     b"\xa2\x08\x00\x0a\x00\x00\x03a/b"),
    ("v5-unsuback", 5, lambda c: c.Unsuback(10, [0, 0x11]), b"\xb0\x05\x00\x0a\x00\x00\x11"),
    ("v5-pingreq", 5, lambda c: c.Pingreq(), b"\xc0\x00"),
    ("v5-pingresp", 5, lambda c: c.Pingresp(), b"\xd0\x00"),
    ("v5-disconnect", 5, lambda c: c.Disconnect(), b"\xe0\x00"),
    ("v5-disconnect-reason", 5, lambda c: c.Disconnect(0x04), b"\xe0\x01\x04"),
    ("v5-disconnect-properties", 5, lambda c: c.Disconnect(0, {"session_expiry_interval": 10}),
     b"\xe0\x07\x00\x05\x11\x00\x00\x00\x0a"),
    ("v5-auth", 5, lambda c: c.Auth(), b"\xf0\x00"),
    ("v5-auth-properties", 5,
     lambda c: c.Auth(0x18, {"authentication_method": "SCRAM", "authentication_data": b"\x01\x02"}),
     b"\xf0\x0f\x18\x0d\x15\x00\x05SCRAM\x16\x00\x02\x01\x02"),
]


@pytest.mark.parametrize(("version", "make", "golden"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_golden_encode(codec: ModuleType, version: int, make: Callable[[Any], Any],
                       golden: bytes) -> None:
    assert codec.encode(make(codec), version) == golden


@pytest.mark.parametrize(("version", "make", "golden"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_golden_decode(codec: ModuleType, version: int, make: Callable[[Any], Any],
                       golden: bytes) -> None:
    assert codec.decode_packet(golden, version) == make(codec)


def test_every_packet_type_has_a_golden_case() -> None:
    from mqttquic.enums import PacketType

    seen = {(version, golden[0] >> 4) for _, version, _, golden in CASES}
    for version in (4, 5):
        for packet_type in PacketType:
            if packet_type == PacketType.AUTH and version == 4:
                continue
            assert (version, packet_type) in seen, (version, packet_type.name)


def test_encode_publish_matches_encode(codec: ModuleType) -> None:
    pub = codec.Publish("device/1/t", b"\x00" * 300, qos=1, packet_id=7, retain=True)
    expected = codec.encode(pub, 4)
    assert codec.encode_publish("device/1/t", b"\x00" * 300, qos=1, packet_id=7,
                                retain=True) == expected
    # 314-byte body: a two-byte remaining length.
    assert expected[:3] == b"\x33\xba\x02"
    assert codec.encode_publish("t", bytearray(b"ab")) == b"\x30\x05\x00\x01tab"
    assert codec.encode_publish("t", memoryview(b"ab")) == b"\x30\x05\x00\x01tab"
    assert codec.encode_publish("t", b"ab", protocol_version=5) == b"\x30\x06\x00\x01t\x00ab"
