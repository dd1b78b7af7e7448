"""Round trips of every packet type with the flag and property combinations that matter."""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import pytest

from mqttquic.properties import PROPERTIES, WILL

SAMPLE_VALUES: dict[str, Any] = {
    "byte": 1, "u16": 513, "u32": 70_000, "varint": 300, "string": "héllo/ü",
    "binary": b"\x00\xff\x10", "string_pair": ("name", "välue"),
}


def _props_for(packet_type: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for spec in PROPERTIES.values():
        if packet_type in spec.allowed_in:
            value = SAMPLE_VALUES[spec.wire_type]
            # A SUBSCRIBE carries at most one subscription identifier.
            if spec.multiple and not (packet_type == 8 and spec.identifier == 0x0B):
                value = [value, value]
            props[spec.name] = value
    return props


@pytest.mark.parametrize("version", [4, 5])
def test_publish_flag_combinations(codec: ModuleType, version: int) -> None:
    for qos, retain, dup, payload in itertools.product((0, 1, 2), (False, True), (False, True),
                                                       (b"", b"x", bytes(200), bytes(20000))):
        if dup and not qos:
            continue
        pub = codec.Publish("a/b/ç", payload, qos, retain, dup, 1234 if qos else None)
        assert codec.decode_packet(codec.encode(pub, version), version) == pub


def test_every_property_on_every_packet_it_is_allowed_on(codec: ModuleType) -> None:
    c = codec
    packets = [
        c.Connect("id", False, 10, "user", b"pw",
                  c.Will("w", b"p", 2, True, _props_for(WILL)), _props_for(1), 5),
        c.Connack(True, 0, _props_for(2)),
        c.Publish("t", b"p", 1, packet_id=3, properties=_props_for(3)),
        c.Puback(1, 0x10, _props_for(4)),
        c.Pubrec(1, 0x80, _props_for(5)),
        c.Pubrel(1, 0x92, _props_for(6)),
        c.Pubcomp(1, 0, _props_for(7)),
        c.Subscribe(1, [c.Subscription("a/+/#", 2, True, True, 1)], _props_for(8)),
        c.Suback(1, [0, 1, 2, 0x80, 0xA2], _props_for(9)),
        c.Unsubscribe(1, ["a", "b/#"], _props_for(10)),
        c.Unsuback(1, [0, 0x11], _props_for(11)),
        c.Disconnect(0x04, _props_for(14)),
        c.Auth(0x19, _props_for(15)),
    ]
    for packet in packets:
        assert packet.properties, type(packet).__name__
        assert c.decode_packet(c.encode(packet, 5), 5) == packet


@pytest.mark.parametrize("version", [4, 5])
def test_connect_flag_combinations(codec: ModuleType, version: int) -> None:
    c = codec
    for clean, user, password, will_qos, will_retain in itertools.product(
            (False, True), (None, "u"), (None, b"p"), (None, 0, 1, 2), (False, True)):
        if version == 4 and password is not None and user is None:
            continue
        if will_qos is None and will_retain:
            continue
        will = None if will_qos is None else c.Will("w/t", b"gone", will_qos, will_retain)
        connect = c.Connect("client", clean, 30, user, password, will, protocol_version=version)
        assert c.decode_packet(c.encode(connect), 4) == connect


def test_repr_and_equality(codec: ModuleType) -> None:
    pub = codec.Publish("a", b"x", 1, packet_id=2)
    assert repr(pub) == ("Publish(topic='a', payload=b'x', qos=1, retain=False, dup=False,"
                         " packet_id=2, properties={})")
    assert pub == codec.Publish("a", b"x", 1, packet_id=2)
    assert pub != codec.Publish("a", b"y", 1, packet_id=2)
    assert codec.Puback(2) != codec.Pubrec(2)
    assert repr(codec.Pingreq()) == "Pingreq()"
    with pytest.raises(TypeError):
        hash(pub)
    with pytest.raises(AttributeError):
        pub.colour = "red"  # type: ignore[attr-defined]


def test_connect_repr_hides_the_password(codec: ModuleType) -> None:
    text = repr(codec.Connect("c", username="u", password=b"hunter2"))
    assert "hunter2" not in text and "password='***'" in text
    assert "password=None" in repr(codec.Connect("c"))
