"""MQTT 5 reason codes (section 2.4) and MQTT 3.1.1 CONNACK return codes."""

from __future__ import annotations

from .enums import PacketType

__all__ = ["reason_code_name", "is_failure"]

# Codes whose meaning does not depend on the packet that carries them.
_NAMES: dict[int, str] = {
    0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers",
    0x11: "No subscription existed",
    0x18: "Continue authentication",
    0x19: "Re-authenticate",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

# MQTT 3.1.1 CONNACK return codes (section 3.2.2.3).
_V311_CONNACK: dict[int, str] = {
    0: "Connection Accepted",
    1: "Unacceptable protocol version",
    2: "Identifier rejected",
    3: "Server unavailable",
    4: "Bad user name or password",
    5: "Not authorized",
}


def reason_code_name(
    code: int, packet_type: PacketType | int | None = None, protocol_version: int = 5
) -> str:
    """Return the specification's name of ``code`` as carried by ``packet_type``."""
    if protocol_version < 5 and packet_type == PacketType.CONNACK:
        return _V311_CONNACK.get(code, f"Unknown return code {code}")
    if protocol_version < 5 and packet_type == PacketType.SUBACK:
        return "Failure" if code == 0x80 else f"Granted QoS {code}"
    if code == 0x00:
        if packet_type == PacketType.DISCONNECT:
            return "Normal disconnection"
        if packet_type == PacketType.SUBACK:
            return "Granted QoS 0"
        return "Success"
    if code in (0x01, 0x02) and packet_type in (PacketType.SUBACK, None):
        return f"Granted QoS {code}"
    return _NAMES.get(code, f"Unknown reason code 0x{code:02X}")


def is_failure(code: int) -> bool:
    """Reason codes of 0x80 and above are failures (section 2.4)."""
    return code >= 0x80
