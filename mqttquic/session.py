"""The MQTT session of one connection, sans I/O (like h11 and aioquic's QuicConnection).

No sockets, no asyncio, no clock: bytes and the current time go in; bytes to
send (per channel), events and the next timer deadline come out.

A *channel* is one ordered byte stream. Over TCP there is one (``CONTROL``).
Over QUIC each stream is a channel, as EMQX defines them: the control stream
carries CONNECT, PINGREQ and DISCONNECT; data streams carry PUBLISH, SUBSCRIBE
and their acks, and each data stream has its own packet identifiers.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _trace
from . import events as ev
from ._channel import Channel, Keepalive, NoPacketIds, PacketIdInUse, SendWindow
from .codec import (
    DEFAULT_MAX_PACKET_SIZE,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    encode,
)
from .enums import PacketType
from .errors import MalformedPacket, MQTTQUICError, PublishFailed
from .limits import ServerLimits
from .reason_codes import reason_code_name

__all__ = ["CONTROL", "Session", "SessionClosed", "NoPacketIds", "PacketIdInUse",
           "check_publish_size"]

logger = logging.getLogger("mqttquic.session")

CONTROL = 0


def check_publish_size(packet: Publish, protocol_version: int, limit: int | None) -> None:
    """PublishFailed (0x95) when ``packet`` is larger than the broker's Maximum Packet
    Size (MQTT 5 CONNACK), before it is sent: the broker would disconnect for it."""
    if limit is not None:
        size = len(encode(packet, protocol_version))
        if size > limit:
            raise PublishFailed(packet.topic, 0x95, f"Packet too large: {size} bytes, the"
                                f" broker accepts at most {limit} (CONNACK Maximum Packet Size)")


class SessionClosed(MQTTQUICError):
    """The session ended (refused, timed out, disconnected); nothing more can be sent."""


class _SessionState:
    """The session's state, its outputs and its commands; ``Session`` adds what each
    received packet means."""

    def __init__(self, connect: Connect, *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 ping_timeout: float | None = None, downgrade_qos: bool = False,
                 manual_acks: bool = False) -> None:
        self.connect_packet = connect
        self.protocol_version = connect.protocol_version
        self.keepalive = Keepalive(float(connect.keepalive), ping_timeout)
        self.max_packet_size = max_packet_size
        self.state = "new"  # new -> connecting -> connected -> closed
        self.session_present = False
        # What the broker's CONNACK allows; nothing beyond it is sent (MQTT-3.2.2-11).
        self.limits = ServerLimits()
        # A publish above the broker's Maximum QoS: sent at the maximum (True), or refused.
        self.downgrade_qos = downgrade_qos
        # True: an incoming QoS 1/2 PUBLISH is acknowledged (PUBACK, PUBREC) only when
        # acknowledge() says the application took it, so that the broker's in-flight
        # window, not our memory, bounds what a slow reader is sent.
        self.manual_acks = manual_acks
        # The broker's Receive Maximum: QoS 1/2 publishes in flight at once (MQTT 5).
        self.window = SendWindow()
        self._channels: dict[int, Channel] = {}
        self._closed_channels: set[int] = set()
        self._out: list[tuple[int, bytes]] = []
        self._events: list[ev.Event] = []
        self._adopted = False
        # The packet trace (mosquitto's -d), decided once: no cost per packet when off.
        self._trace = _trace.enabled()
        self.bytes_sent = 0
        self.bytes_received = 0

    def data_to_send(self) -> list[tuple[int, bytes]]:
        """``(channel, bytes)`` to write, in order; drained by the call."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[ev.Event]:
        """Events since the last call; drained by the call."""
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        if self.state not in ("connecting", "connected"):
            return None
        return self.keepalive.deadline()

    @property
    def in_flight(self) -> int:
        return self.window.in_flight

    def connect(self, now: float) -> None:
        if self.state != "new":
            raise MQTTQUICError(f"connect() in state {self.state}")
        self.state = "connecting"
        self._send(CONTROL, self.connect_packet, now)

    def open_channel(self, channel: int) -> None:
        self._closed_channels.discard(channel)
        if channel not in self._channels:
            self._channels[channel] = Channel(self.protocol_version, self.max_packet_size)

    def close_channel(self, channel: int, now: float = 0.0) -> list[Publish]:
        """Forget a channel (its stream closed). Returns its unfinished publishes."""
        state = self._channels.pop(channel, None)
        if channel != CONTROL:
            self._closed_channels.add(channel)  # QUIC never reuses a stream id
        if state is None:
            return []
        unfinished = [p for p in state.outgoing.values() if isinstance(p, Publish)]
        self.window.forget_channel(channel, list(state.outgoing))
        self._release_waiting(now)
        return unfinished

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: dict[str, Any] | None = None, *, channel: int = CONTROL,
                now: float = 0.0, packet_id: int | None = None, dup: bool = False,
                hold_release: bool = False) -> int | None:
        """Queue a PUBLISH. Returns its packet id (QoS 1/2), to match PublishCompleted.

        A message stored in the outbox is sent with its own ``packet_id`` (PacketIdInUse
        while another flow holds it) and ``dup`` when an earlier run may have sent it;
        ``hold_release`` (QoS 2): its PUBREC is reported (PublishReceived) and PUBREL
        waits for ``release()``."""
        self._check_open()
        if qos not in (0, 1, 2):
            raise MalformedPacket(f"PUBLISH with QoS {qos!r} [MQTT-3.3.1-4]")
        qos = self.limits.publish_qos(topic, qos, retain, properties, downgrade=self.downgrade_qos)
        if not qos:
            packet = Publish(topic, payload, 0, retain, False, None, properties)
            self._check_size(packet)
            self._send(channel, packet, now)
            return None
        state = self._channel(channel)
        packet_id = state.allocate_id() if packet_id is None else state.claim_id(packet_id)
        packet = Publish(topic, payload, qos, retain, dup, packet_id, properties)
        self._check_size(packet)
        state.outgoing[packet_id] = packet
        if hold_release and qos == 2:
            state.held.add(packet_id)
        if self.window.admit(channel, packet):
            self._send(channel, packet, now)
        return packet_id

    def release(self, channel: int, packet_id: int, now: float = 0.0) -> None:
        """Send PUBREL for the QoS 2 flow ``packet_id``: one whose PUBREC was held
        (PublishReceived), or one a persistent session's earlier run had released
        (from the outbox: it counts in the window, beyond the quota if need be)."""
        self._check_open()
        state = self._channel(channel)
        state.held.discard(packet_id)
        sent = state.outgoing.get(packet_id)
        if isinstance(sent, Pubrel):
            return  # released already
        if sent is None:
            state.claim_id(packet_id)
            self.window.in_flight += 1
        release = state.outgoing[packet_id] = Pubrel(packet_id)
        self._send(channel, release, now)

    def subscribe(self, subscriptions: list[Subscription], *, channel: int = CONTROL,
                  properties: dict[str, Any] | None = None, now: float = 0.0) -> int:
        self._check_open()
        self.limits.check_subscribe([s.topic_filter for s in subscriptions], properties)
        state = self._channel(channel)
        packet_id = state.allocate_id()
        state.requests[packet_id] = "subscribe"
        self._send(channel, Subscribe(packet_id, subscriptions, properties), now)
        return packet_id

    def unsubscribe(self, topic_filters: list[str], *, channel: int = CONTROL,
                    properties: dict[str, Any] | None = None, now: float = 0.0) -> int:
        self._check_open()
        state = self._channel(channel)
        packet_id = state.allocate_id()
        state.requests[packet_id] = "unsubscribe"
        self._send(channel, Unsubscribe(packet_id, topic_filters, properties), now)
        return packet_id

    def disconnect(self, reason_code: int = 0, properties: dict[str, Any] | None = None,
                   now: float = 0.0) -> None:
        if self.state in ("connecting", "connected"):
            self._send(CONTROL, Disconnect(reason_code, properties), now)
        self.state = "closed"

    def handle_timer(self, now: float) -> None:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return
        if self.keepalive.ping_sent_at is not None:
            waited = now - self.keepalive.ping_sent_at
            logger.warning("no PINGRESP %.1f s after PINGREQ: connection is dead", waited)
            self._close(ev.KeepaliveTimeout(waited))
            return
        self._ping(now)

    def ping(self, now: float) -> None:
        """Send a PINGREQ now, unless one waits for its PINGRESP already: the PongReceived
        event shows that the broker still serves the session. Unanswered, it ends the
        session as the keepalive's would (KeepaliveTimeout after ``ping_timeout``)."""
        self._check_open()
        if self.state == "connected" and self.keepalive.ping_sent_at is None:
            self._ping(now)

    def acknowledge(self, channel: int, packet_id: int, now: float = 0.0) -> None:
        """The application took the QoS 1/2 message ``packet_id`` of ``channel``: send its
        PUBACK (QoS 1) or PUBREC (QoS 2). Nothing when the channel or session is gone (a
        persistent session's broker sends it again)."""
        state = self._channels.get(channel)
        ack = state.take(packet_id) if state is not None and self.state != "closed" else None
        if ack is not None:
            self._send(channel, ack, now)

    def unacknowledged(self) -> list[tuple[int, Publish | Pubrel]]:
        """``(channel, packet)`` of every QoS 1/2 publish not yet completed."""
        return [(channel, packet) for channel, state in self._channels.items()
                for packet in state.outgoing.values()]

    def _check_open(self) -> None:
        if self.state == "closed":
            raise SessionClosed("the session is closed")

    def _check_size(self, packet: Publish) -> None:
        # Larger than the broker's Maximum Packet Size: refused here, not by a disconnect.
        check_publish_size(packet, self.protocol_version, self.limits.maximum_packet_size)

    def _channel(self, channel: int) -> Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = Channel(self.protocol_version, self.max_packet_size)
        return state

    def _send(self, channel: int, packet: Any, now: float) -> None:
        if self._trace:
            _trace.trace(self.connect_packet.client_id, "sending", packet, channel)
        data = encode(packet, self.protocol_version)
        self.bytes_sent += len(data)
        self._out.append((channel, data))
        if channel == CONTROL:
            self.keepalive.last_sent = now

    def _ping(self, now: float) -> None:
        self._send(CONTROL, Pingreq(), now)
        self.keepalive.ping_sent_at = now

    def _close(self, event: ev.Event) -> None:
        self.state = "closed"
        self._events.append(event)

    def _fail(self, channel: int, reason: str, control_event: type[ev.ProtocolViolation],
              now: float = 0.0) -> None:
        """The broker broke ``channel``: a data channel ends alone, the control channel
        ends the connection."""
        if channel == CONTROL:
            self._close(control_event(reason))
            return
        logger.warning("broker ended data channel %d: %s", channel, reason)
        unfinished = self.close_channel(channel, now)
        self._events.append(ev.ChannelFailed(channel, reason, unfinished))

    def _release_waiting(self, now: float) -> None:
        for channel, packet in self.window.released():
            self._send(channel, packet, now)

    def _complete(self, channel: int, packet_id: int, reason_code: int, now: float) -> None:
        """A QoS 1/2 flow we started is complete (its channel has forgotten it)."""
        self._channels[channel].held.discard(packet_id)
        self.window.completed()
        self._events.append(ev.PublishCompleted(channel, packet_id, reason_code))
        self._release_waiting(now)

    def _violation(self, reason: str, channel: int = CONTROL, now: float = 0.0) -> None:
        logger.error("protocol violation by the broker: %s", reason)
        self._fail(channel, reason, ev.ProtocolViolation, now)


class Session(_SessionState):
    """MQTT state for one connection: ids, in-flight tables, keepalive, events. The
    transport calls the commands (``connect()``, ``publish()``, ...) and
    ``receive_data()``, and reads ``data_to_send()``, ``events()`` and
    ``next_timer()``."""

    def receive_data(self, channel: int, data: bytes, now: float) -> None:
        """Bytes that arrived on ``channel``."""
        if self.state == "closed":
            return
        self.bytes_received += len(data)
        if channel in self._closed_channels:
            return  # the rest of a data channel that was closed: nobody reads it
        state = self._channel(channel)
        try:
            packets = state.decoder.feed(data)
        except MalformedPacket as exc:
            # Handle what arrived intact before the bad packet, then give up the channel
            # (a data stream) or the connection (the control channel).
            for packet in exc.packets:
                self._handle(channel, state, packet, now)
            logger.error("malformed packet from the broker on channel %d: %s", channel, exc)
            self._fail(channel, f"malformed packet: {exc}", ev.ProtocolViolation, now)
            return
        for packet in packets:
            self._handle(channel, state, packet, now)
            if self.state == "closed" or channel not in self._channels:
                return

    def _handle(self, channel: int, state: Channel, packet: Any, now: float) -> None:
        if self._trace:
            _trace.trace(self.connect_packet.client_id, "received", packet, channel)
        kind = type(packet)
        v5 = self.protocol_version == 5
        if kind is Publish:
            self._handle_publish(channel, state, packet, now)
        elif kind is Pubrec and packet.packet_id in state.held and packet.reason_code < 0x80:
            if isinstance(state.outgoing.get(packet.packet_id), Publish):
                self._events.append(ev.PublishReceived(channel, packet.packet_id))
        elif kind is Puback or kind is Pubrec or kind is Pubcomp:
            completed, release = state.acknowledged(packet, v5)
            if release is not None:
                self._send(channel, release, now)
            if completed is not None:
                self._complete(channel, packet.packet_id, completed, now)
        elif kind is Pubrel:
            self._send(channel, state.receive_pubrel(packet.packet_id, v5), now)
        elif kind is Suback or kind is Unsuback:
            if state.request_done(packet.packet_id,
                                  "subscribe" if kind is Suback else "unsubscribe"):
                event_class = ev.SubscribeCompleted if kind is Suback else ev.UnsubscribeCompleted
                self._events.append(event_class(channel, packet.packet_id,
                                                list(packet.reason_codes), packet.properties))
        elif kind is Pingresp:
            self.keepalive.ping_sent_at = None
            self._events.append(ev.PongReceived())
        elif kind is Connack:
            self._handle_connack(packet, now)
        elif kind is Disconnect:
            name = reason_code_name(packet.reason_code, PacketType.DISCONNECT)
            if channel != CONTROL:
                self._fail(channel, f"broker disconnected: {name} (0x{packet.reason_code:02X})",
                           ev.ProtocolViolation, now)
                return
            logger.warning("broker disconnected: %s (0x%02X)", name, packet.reason_code)
            self._close(ev.ServerDisconnected(packet.reason_code, name, packet.properties))
        else:
            self._violation(f"a client does not receive {kind.__name__.upper()}", channel, now)

    def _handle_connack(self, packet: Connack, now: float) -> None:
        if self.state != "connecting":
            self._violation("CONNACK outside of connecting")
            return
        if packet.reason_code:
            name = reason_code_name(packet.reason_code, PacketType.CONNACK, self.protocol_version)
            self._close(ev.ConnectFailed(packet.reason_code, name, packet.properties))
            return
        self.state = "connected"
        self.session_present = packet.session_present
        self.limits = ServerLimits.from_connack(packet.properties)
        self.window.quota = self.limits.receive_maximum
        if self.limits.server_keep_alive is not None:
            self.keepalive.interval = float(self.limits.server_keep_alive)
        self._events.append(ev.Connected(packet.session_present, packet.properties))
        if self._adopted:
            self._resume_control_flows(packet.session_present, now)

    def adopt(self, previous: Session) -> None:
        """Take over the control channel's unfinished QoS 1/2 flows of the previous
        connection of a persistent session (clean_start false); they continue after
        CONNACK: PUBLISH again with DUP and the same packet id, or PUBREL where the
        broker had answered PUBREC. Duplicate QoS 2 deliveries stay suppressed."""
        old = previous._channels.get(CONTROL)
        if old is None or not (old.outgoing or old.incoming_qos2):
            return
        self._channel(CONTROL).adopt(old)
        self._adopted = True

    def _resume_control_flows(self, session_present: bool, now: float) -> None:
        done, again = self._channels[CONTROL].resume(session_present)
        for packet_id in done:
            self._events.append(ev.PublishCompleted(CONTROL, packet_id, 0))
        for packet in again:
            if isinstance(packet, Pubrel):
                # Its PUBLISH was in flight already: the flow counts, even beyond the quota.
                self.window.in_flight += 1
                self._send(CONTROL, packet, now)
            elif self.window.admit(CONTROL, packet):
                self._send(CONTROL, packet, now)
        logger.info("resumed %d unfinished QoS 1/2 flows (session present: %s)", len(again),
                    session_present)

    def _handle_publish(self, channel: int, state: Channel, packet: Publish, now: float) -> None:
        if not state.resolve_alias(packet):
            self._violation(f"unknown topic alias {packet.properties['topic_alias']}", channel, now)
            return
        deliver, ack = state.receive_publish(packet, self.manual_acks)
        if deliver:
            self._events.append(ev.MessageReceived(packet, channel))
        if ack is not None:
            self._send(channel, ack, now)
