"""Our codec against paho-mqtt's own encoder: same bytes, same fields.

paho writes each packet through ``Client._packet_queue``; capturing that call
gives the bytes paho would put on the wire, with no socket involved.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


class _NoSocket:
    def close(self) -> None:
        pass


def _paho(version: int, client_id: str = "cid", **kwargs: Any) -> tuple[paho.Client, list[bytes]]:
    protocol = paho.MQTTv5 if version == 5 else paho.MQTTv311
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         **kwargs)
    captured: list[bytes] = []

    def capture(command: int, packet: bytes, mid: int, qos: int, info: Any = None) -> int:
        captured.append(bytes(packet))
        return 0

    client._packet_queue = capture  # type: ignore[method-assign]
    # paho refuses to encode while unconnected; a stand-in socket that only closes.
    client._sock = _NoSocket()  # type: ignore[assignment]
    return client, captured


CASES = [
    ("device/abc123/telemetry/sensors", b"x" * 32, 0, False),
    ("a", b"", 1, True),
    ("ünïcode/topic", bytes(range(256)) * 3, 2, False),
    ("t", b"y" * 20_000, 1, False),
]


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize(("topic", "payload", "qos", "retain"), CASES)
def test_publish_bytes_equal_paho(codec: ModuleType, version: int, topic: str, payload: bytes,
                                  qos: int, retain: bool) -> None:
    client, captured = _paho(version)
    client._send_publish(42, topic.encode(), payload, qos, retain)
    [wire] = captured
    packet_id = 42 if qos else None
    assert codec.encode_publish(topic, payload, qos, packet_id, retain,
                                protocol_version=version) == wire
    decoded = codec.decode_packet(wire, version)
    assert (decoded.topic, decoded.payload, decoded.qos, decoded.retain, decoded.packet_id) == (
        topic, payload, qos, retain, packet_id)


def test_publish_with_properties_decodes_like_paho_sent_it(codec: ModuleType) -> None:
    client, captured = _paho(5)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 30
    props.ContentType = "application/json"
    props.UserProperty = [("a", "1"), ("b", "2")]
    client._send_publish(7, b"t/1", b"{}", 1, False, properties=props)
    decoded = codec.decode_packet(captured[0], 5)
    assert decoded.properties == {"message_expiry_interval": 30,
                                  "content_type": "application/json",
                                  "user_property": [("a", "1"), ("b", "2")]}
    assert codec.encode(decoded, 5) == captured[0]


@pytest.mark.parametrize("version", [4, 5])
def test_connect_equals_paho(codec: ModuleType, version: int) -> None:
    client, captured = _paho(version, client_id="sensor-7")
    client.username_pw_set("user", "secret")
    client.will_set("dev/sensor-7/status", b"offline", qos=1, retain=True)
    client._send_connect(30)
    [wire] = captured
    expected = codec.Connect("sensor-7", True, 30, "user", b"secret",
                             codec.Will("dev/sensor-7/status", b"offline", 1, True),
                             protocol_version=version)
    assert codec.decode_packet(wire, version) == expected
    assert codec.encode(expected) == wire


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_unsubscribe_and_acks_equal_paho(codec: ModuleType, version: int) -> None:
    client, captured = _paho(version)
    options = SubscribeOptions(qos=1) if version == 5 else 1
    client._send_subscribe(False, [(b"a/+/c", options), (b"d/#", SubscribeOptions(qos=2)
                                                          if version == 5 else 2)])
    client._send_unsubscribe(False, [b"a/+/c"])
    client._send_command_with_mid(paho.PUBACK, 513, False)
    client._send_command_with_mid(paho.PUBREL | 2, 514, False)
    client._send_simple_command(paho.PINGREQ)
    sub, unsub, puback, pubrel, ping = captured
    decoded_sub = codec.decode_packet(sub, version)
    assert [(s.topic_filter, s.qos) for s in decoded_sub.subscriptions] == [("a/+/c", 1),
                                                                           ("d/#", 2)]
    assert codec.encode(decoded_sub, version) == sub
    decoded_unsub = codec.decode_packet(unsub, version)
    assert decoded_unsub.topic_filters == ["a/+/c"]
    assert codec.encode(decoded_unsub, version) == unsub
    assert codec.encode(codec.Puback(513), version) == puback
    assert codec.encode(codec.Pubrel(514), version) == pubrel
    assert codec.encode(codec.Pingreq(), version) == ping
