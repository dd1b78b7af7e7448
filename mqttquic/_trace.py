"""A packet trace in mosquitto's words (``mosquitto_sub -d``), on the logger
``mqttquic.packets`` at DEBUG: ``Client dev-1 sending PUBLISH (d0, q1, r0, m1, 't', ...
(5 bytes))``. The CLI's ``-d`` prints it; an application can switch it on with
``logging.getLogger("mqttquic.packets").setLevel(logging.DEBUG)``.

Whether to trace is decided once per connection (``enabled()``), so a connection that
does not trace pays nothing per packet. Passwords are never in it: CONNECT is named,
not shown."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["describe", "enabled", "logger", "trace"]

logger = logging.getLogger("mqttquic.packets")


def enabled() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def describe(packet: Any) -> str:
    """One packet as mosquitto's clients print it."""
    name = type(packet).__name__.upper()
    if name == "PUBLISH":
        mid = packet.packet_id or 0
        return (f"PUBLISH (d{int(packet.dup)}, q{packet.qos}, r{int(packet.retain)}, m{mid},"
                f" '{packet.topic}', ... ({len(packet.payload)} bytes))")
    if name in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP"):
        return f"{name} (Mid: {packet.packet_id}, RC:{packet.reason_code})"
    if name == "CONNACK":
        return f"CONNACK ({packet.reason_code})"
    if name == "SUBSCRIBE":
        topics = ", ".join(f"Topic: {s.topic_filter}, QoS: {s.qos}" for s in packet.subscriptions)
        return f"SUBSCRIBE (Mid: {packet.packet_id}, {topics})"
    if name == "UNSUBSCRIBE":
        return f"UNSUBSCRIBE (Mid: {packet.packet_id}, Topics: {', '.join(packet.topic_filters)})"
    if name in ("SUBACK", "UNSUBACK"):
        return f"{name} (Mid: {packet.packet_id}, RC: {list(packet.reason_codes)})"
    if name == "DISCONNECT" and packet.reason_code:
        return f"DISCONNECT ({packet.reason_code})"
    return name


def trace(client_id: str, direction: str, packet: Any, channel: int = 0) -> None:
    """Log ``packet`` as sent or received (``direction``) by ``client_id``; over QUIC a
    data stream's number follows."""
    where = f" [stream {channel}]" if channel else ""
    logger.debug("Client %s %s %s%s", client_id or "(no id)", direction, describe(packet), where)
