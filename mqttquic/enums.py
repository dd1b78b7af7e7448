"""Packet types and other small enumerations of the MQTT wire format."""

from __future__ import annotations

import enum

__all__ = ["PacketType", "MQTT_3_1_1", "MQTT_5"]

MQTT_3_1_1 = 4
MQTT_5 = 5


class PacketType(enum.IntEnum):
    """The four high bits of a packet's first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15
