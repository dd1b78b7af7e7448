"""One channel of an MQTT session, sans I/O: its packet identifiers, the QoS 1/2 flows
on it in both directions, and its Topic Aliases; and the session's send window.

A channel is one ordered byte stream (TCP's only one, or one QUIC stream); each has its
own packet identifiers, as EMQX's data streams do. ``session.Session`` owns the
channels and decides what to send; a channel keeps the per-flow state and answers what
a received packet means for it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from typing import Any

from .codec import Puback, Pubcomp, Publish, Pubrec, Pubrel, StreamDecoder
from .errors import MQTTQUICError

__all__ = ["Channel", "Keepalive", "NoPacketIds", "PacketIdInUse", "SendWindow"]

logger = logging.getLogger("mqttquic.session")

PACKET_ID_NOT_FOUND = 0x92


class NoPacketIds(MQTTQUICError):
    """All 65,535 packet identifiers of a channel are in use."""


class PacketIdInUse(MQTTQUICError):
    """The packet identifier asked for (a stored message's own) is in use on the
    channel now: try again once its flow is done."""


class Channel:
    """Packet identifiers and flows of one channel."""

    __slots__ = ("decoder", "last_id", "outgoing", "incoming_qos2", "unacknowledged", "requests",
                 "aliases", "held")

    def __init__(self, protocol_version: int, max_packet_size: int) -> None:
        self.decoder = StreamDecoder(protocol_version, max_packet_size)
        self.last_id = 0
        # packet id -> the Publish (QoS 1, or QoS 2 before PUBREC) or Pubrel awaiting its ack
        self.outgoing: dict[int, Publish | Pubrel] = {}
        self.incoming_qos2: set[int] = set()
        # Received QoS 1/2 packet ids whose PUBACK/PUBREC waits for acknowledge().
        self.unacknowledged: set[int] = set()
        # packet id -> "subscribe" / "unsubscribe"
        self.requests: dict[int, str] = {}
        self.aliases: dict[int, str] = {}
        # QoS 2 publishes whose PUBREL waits for release() after PUBREC (a stored
        # message: the outbox records the PUBREC first, so a restart sends PUBREL).
        self.held: set[int] = set()

    def allocate_id(self) -> int:
        candidate = self.last_id
        for _ in range(0xFFFF):
            candidate = candidate % 0xFFFF + 1
            if candidate not in self.outgoing and candidate not in self.requests:
                self.last_id = candidate
                return candidate
        raise NoPacketIds("all 65535 packet identifiers of this channel are in use")

    def claim_id(self, packet_id: int) -> int:
        """``packet_id`` itself (a stored message keeps its own), or PacketIdInUse."""
        if packet_id in self.outgoing or packet_id in self.requests:
            raise PacketIdInUse(f"packet identifier {packet_id} is in use on this channel")
        return packet_id

    def adopt(self, old: Channel) -> None:
        """Continue the flows of ``old`` (the same channel of the previous connection of
        a persistent session): what we sent, and the QoS 2 deliveries already seen."""
        self.outgoing = dict(old.outgoing)
        self.incoming_qos2 = set(old.incoming_qos2)
        self.held = set(old.held)
        self.last_id = old.last_id

    def resume(self, session_present: bool) -> tuple[list[int], list[Publish | Pubrel]]:
        """The adopted flows after CONNACK: the packet ids that are complete, and what to
        send again, in order (PUBLISH with DUP, or PUBREL where the broker had answered
        PUBREC). A broker that forgot the session (``session_present`` false) holds no
        half of any QoS 2 flow: a PUBREC'd message was the broker's, nothing to release."""
        done: list[int] = []
        again: list[Publish | Pubrel] = []
        if not session_present:
            self.incoming_qos2.clear()
        for packet_id, packet in sorted(self.outgoing.items()):
            if isinstance(packet, Pubrel) and not session_present:
                del self.outgoing[packet_id]
                done.append(packet_id)
                continue
            if isinstance(packet, Publish):
                packet.dup = True
            again.append(packet)
        return done, again

    # --- acknowledgements of what we sent ------------------------------------------------

    def acknowledged(self, packet: Puback | Pubrec | Pubcomp,
                     v5: bool) -> tuple[int | None, Pubrel | None]:
        """A PUBACK, PUBREC or PUBCOMP arrived: the reason code of the flow it completes
        (its packet id is then free again), or None; and the PUBREL to send, or None."""
        packet_id = packet.packet_id
        sent = self.outgoing.get(packet_id)
        if isinstance(packet, Pubrec):
            if isinstance(sent, Publish) and sent.qos == 2:
                if packet.reason_code >= 0x80:
                    del self.outgoing[packet_id]
                    return packet.reason_code, None
                release = self.outgoing[packet_id] = Pubrel(packet_id)
                return None, release
            if isinstance(sent, Pubrel):
                return None, sent  # our PUBREL was lost with a connection: again
            return None, Pubrel(packet_id, PACKET_ID_NOT_FOUND if v5 else 0)
        expected = (isinstance(sent, Publish) and sent.qos == 1 if isinstance(packet, Puback)
                    else isinstance(sent, Pubrel))
        if not expected:
            logger.warning("%s for unknown packet id %d", type(packet).__name__.upper(), packet_id)
            return None, None
        del self.outgoing[packet_id]
        return packet.reason_code, None

    def request_done(self, packet_id: int, kind: str) -> bool:
        """A SUBACK ("subscribe") or UNSUBACK ("unsubscribe") arrived: whether it answers
        a request of that kind (its packet id is then free again)."""
        if self.requests.get(packet_id) != kind:
            logger.warning("%s for unknown packet id %d",
                           "SUBACK" if kind == "subscribe" else "UNSUBACK", packet_id)
            return False
        del self.requests[packet_id]
        return True

    # --- received application messages -------------------------------------------------

    def resolve_alias(self, packet: Publish) -> bool:
        """Apply the packet's Topic Alias (MQTT 5); False for an alias never defined."""
        alias = packet.properties.get("topic_alias")
        if alias is None:
            return True
        if packet.topic:
            self.aliases[alias] = packet.topic
            return True
        if alias in self.aliases:
            packet.topic = self.aliases[alias]
            return True
        return False

    def receive_publish(self, packet: Publish, manual_acks: bool) -> tuple[bool, Any]:
        """A PUBLISH arrived: whether to deliver it, and the ack to send now (None:
        none, or it waits for ``take()``). QoS 2 is delivered on first sight and its
        duplicates are acknowledged again until PUBREL (a duplicate of one the
        application has not taken yet waits with it)."""
        packet_id = packet.packet_id
        if packet_id is None:
            return True, None
        if packet.qos == 1:
            if manual_acks:
                self.unacknowledged.add(packet_id)
                return True, None
            return True, Puback(packet_id)
        first = packet_id not in self.incoming_qos2
        if first:
            self.incoming_qos2.add(packet_id)
            if manual_acks:
                self.unacknowledged.add(packet_id)
                return True, None
        if packet_id in self.unacknowledged:
            return first, None
        return first, Pubrec(packet_id)

    def take(self, packet_id: int) -> Puback | Pubrec | None:
        """The application took message ``packet_id``: its PUBACK (QoS 1) or PUBREC
        (QoS 2), or None when it is not waiting."""
        if packet_id not in self.unacknowledged:
            return None
        self.unacknowledged.discard(packet_id)
        return Pubrec(packet_id) if packet_id in self.incoming_qos2 else Puback(packet_id)

    def receive_pubrel(self, packet_id: int, v5: bool) -> Pubcomp:
        """The broker releases a QoS 2 delivery: our PUBCOMP ("not found" for an id we
        do not know, MQTT 5)."""
        known = packet_id in self.incoming_qos2
        self.incoming_qos2.discard(packet_id)
        return Pubcomp(packet_id, 0 if known or not v5 else PACKET_ID_NOT_FOUND)


class SendWindow:
    """The broker's Receive Maximum: how many QoS 1/2 publishes may be in flight at
    once (over all channels); the others wait, in order."""

    __slots__ = ("quota", "in_flight", "_waiting")

    def __init__(self, quota: int = 65535) -> None:
        self.quota = quota
        self.in_flight = 0
        self._waiting: deque[tuple[int, Publish]] = deque()

    def admit(self, channel: int, packet: Publish) -> bool:
        """True: send it now (it counts as in flight); False: it waits its turn."""
        if self.in_flight < self.quota:
            self.in_flight += 1
            return True
        self._waiting.append((channel, packet))
        return False

    def completed(self) -> None:
        self.in_flight -= 1

    def released(self) -> Iterator[tuple[int, Publish]]:
        """The waiting publishes that may go now, each counted as in flight."""
        while self._waiting and self.in_flight < self.quota:
            self.in_flight += 1
            yield self._waiting.popleft()

    def forget_channel(self, channel: int, packet_ids: Iterator[int] | list[int]) -> None:
        """``channel`` closed with ``packet_ids`` outstanding: those in flight no longer
        count, those waiting no longer wait."""
        waiting = {packet.packet_id for c, packet in self._waiting if c == channel}
        self.in_flight -= sum(1 for packet_id in packet_ids if packet_id not in waiting)
        self._waiting = deque(item for item in self._waiting if item[0] != channel)


class Keepalive:
    """MQTT keepalive (on the control channel): when a PINGREQ is due, and when its
    missing PINGRESP means the connection is dead."""

    __slots__ = ("interval", "ping_timeout", "last_sent", "ping_sent_at")

    def __init__(self, interval: float, ping_timeout: float | None = None) -> None:
        self.interval = interval  # 0: no keepalive
        # How long a PINGREQ may wait for its PINGRESP before the connection is dead.
        self.ping_timeout = ping_timeout if ping_timeout is not None else max(1.0, interval / 2)
        self.last_sent = 0.0  # when the control channel last carried a packet
        self.ping_sent_at: float | None = None  # a PINGREQ waiting for its PINGRESP

    def deadline(self) -> float | None:
        """When the next PINGREQ is due, or its PINGRESP overdue; None: no keepalive."""
        if not self.interval:
            return None
        if self.ping_sent_at is not None:
            return self.ping_sent_at + self.ping_timeout
        return self.last_sent + self.interval
