"""paho-mqtt's client with what the outbox needs of it, which paho's API does not give:
a stored message sent with its own packet id and DUP flag, and a QoS 2 PUBREL that
waits until the PUBREC is recorded (``_inflight.StoredFlow``).

The only module that touches paho's message tables (``_out_messages``,
``_send_publish``, ``_send_pubrel``, ``_handle_pubrec``: private, present in paho-mqtt
2.0 to 2.2); ``_paho_loop`` has its sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties

from .._channel import PacketIdInUse

__all__ = ["PahoClient"]


class PahoClient(paho.Client):
    """``paho.Client`` plus ``publish_stored()`` and ``release_stored()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # QoS 2 packet ids whose PUBREC goes to on_held_pubrec, not straight to PUBREL.
        self.held: set[int] = set()
        self.on_held_pubrec: Callable[[int], None] | None = None
        # Packet ids the transport waits on (subscribes too): never handed out again.
        self.waits_on: Callable[[int], bool] = lambda mid: False

    def set_window(self, limit: int) -> None:
        """QoS 1/2 publishes in flight at most (the CONNACK's Receive Maximum); paho's
        own setter refuses once connected, which is when the CONNACK says it."""
        with self._out_message_mutex:
            self._max_inflight_messages = limit

    def in_use(self, mid: int) -> bool:
        return mid in self._out_messages or self.waits_on(mid)

    def _claim(self, mid: int) -> None:
        if self.in_use(mid):
            raise PacketIdInUse(f"packet identifier {mid} is in use on this connection")

    def _mid_generate(self) -> int:
        # paho counts up from 1 without looking; a stored message brings its own id,
        # which a SUBSCRIBE or another PUBLISH must not take while its flow is open.
        for _ in range(0xFFFF):
            mid: int = super()._mid_generate()
            if not self.in_use(mid):
                return mid
        raise PacketIdInUse("all 65535 packet identifiers are in use")

    def publish_stored(self, mid: int, topic: str, payload: bytes, qos: int, retain: bool,
                       dup: bool, properties: Properties | None,
                       hold_release: bool) -> paho.MQTTMessageInfo:
        """``publish()`` (QoS 1/2) with the packet id ``mid`` and ``dup`` given:
        PacketIdInUse while another flow holds ``mid``."""
        message = paho.MQTTMessage(mid, topic.encode("utf-8"))
        message.timestamp = time.monotonic()
        message.payload = payload
        message.qos = qos
        message.retain = retain
        message.dup = dup
        message.properties = properties
        with self._out_message_mutex:
            self._claim(mid)
            self._out_messages[mid] = message
            if hold_release and qos == 2:
                self.held.add(mid)
            if self._max_inflight_messages and self._inflight_messages >= self._max_inflight_messages:
                message.state = paho.mqtt_ms_queued  # paho sends it when a flow completes
                message.info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                return message.info
            self._inflight_messages += 1
            message.state = paho.mqtt_ms_wait_for_puback if qos == 1 else paho.mqtt_ms_wait_for_pubrec
            message.info.rc = self._send_publish(mid, message.topic.encode("utf-8"), payload, qos,
                                                 retain, dup, message.info, properties)
        return message.info

    def release_stored(self, mid: int) -> int:
        """Send PUBREL for ``mid``: after its held PUBREC, or for a flow an earlier run
        had released (PUBCOMP then reaches ``on_publish`` as for any QoS 2 message)."""
        with self._out_message_mutex:
            self.held.discard(mid)
            message = self._out_messages.get(mid)
            if message is None:  # from an earlier run: its id must be free here
                self._claim(mid)
                message = paho.MQTTMessage(mid, b"")
                message.qos = 2
                self._out_messages[mid] = message
                self._inflight_messages += 1
            message.state = paho.mqtt_ms_wait_for_pubcomp
            rc: int = self._send_pubrel(mid)
        return rc

    def _handle_pubrec(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        mid = int.from_bytes(packet[:2], "big") if len(packet) >= 2 else 0
        failed = len(packet) > 2 and packet[2] >= 0x80  # an MQTT 5 PUBREC refusing it
        if mid in self.held and not failed and self.on_held_pubrec is not None:
            self.on_held_pubrec(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        self.held.discard(mid)
        result: MQTTErrorCode = super()._handle_pubrec()
        return result
