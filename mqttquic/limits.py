"""What the broker allows, from its CONNACK (MQTT 5), checked before anything is sent.

MQTT-3.2.2-11 and its neighbours: a client must not send what the broker said it does
not support. A broker that gets it anyway disconnects (mosquitto with ``max_qos 1``
answers a QoS 2 PUBLISH with DISCONNECT 0x9B), which costs a reconnect per attempt and
ends in a vague failure. Checked here instead, before the packet leaves, the same way
on QUIC (the session) and TCP+TLS (the paho transport): a clear error at once, naming
the limit. Sans I/O, like the session.

MQTT 3.1.1 CONNACKs carry no properties: every limit then stays at MQTT's default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PublishFailed, SubscribeFailed

__all__ = ["ServerLimits"]

logger = logging.getLogger("mqttquic.session")

QOS_NOT_SUPPORTED = 0x9B
RETAIN_NOT_SUPPORTED = 0x9A
TOPIC_ALIAS_INVALID = 0x94
SHARED_NOT_SUPPORTED = 0x9E
SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1
WILDCARDS_NOT_SUPPORTED = 0xA2


@dataclass(frozen=True)
class ServerLimits:
    """The broker's CONNACK capabilities; the defaults are MQTT's when it sends none."""

    maximum_qos: int = 2
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    shared_subscription_available: bool = True
    topic_alias_maximum: int = 0
    maximum_packet_size: int | None = None
    receive_maximum: int = 65535
    server_keep_alive: int | None = None
    assigned_client_identifier: str | None = None

    @classmethod
    def from_connack(cls, properties: Mapping[str, Any] | None) -> ServerLimits:
        props = properties or {}
        return cls(
            maximum_qos=int(props.get("maximum_qos", 2)),
            retain_available=bool(props.get("retain_available", 1)),
            wildcard_subscription_available=bool(props.get("wildcard_subscription_available", 1)),
            subscription_identifiers_available=bool(
                props.get("subscription_identifier_available", 1)),
            shared_subscription_available=bool(props.get("shared_subscription_available", 1)),
            topic_alias_maximum=int(props.get("topic_alias_maximum", 0)),
            maximum_packet_size=props.get("maximum_packet_size"),
            receive_maximum=int(props.get("receive_maximum", 65535)),
            server_keep_alive=props.get("server_keep_alive"),
            assigned_client_identifier=props.get("assigned_client_identifier"),
        )

    def publish_qos(self, topic: str, qos: int, retain: bool,
                    properties: Mapping[str, Any] | None, *, downgrade: bool = False) -> int:
        """The QoS to publish with: ``qos``, or with ``downgrade`` the broker's maximum
        when ``qos`` is above it (logged). PublishFailed, before anything is sent, for
        what the broker does not support."""
        if qos > self.maximum_qos:
            if not downgrade:
                raise PublishFailed(topic, QOS_NOT_SUPPORTED,
                                    f"QoS {qos} not supported: the broker's Maximum QoS is"
                                    f" {self.maximum_qos} (CONNACK; downgrade_qos=True sends"
                                    " at the maximum instead)")
            logger.warning("publish to %r: QoS %d sent as QoS %d, the broker's Maximum QoS",
                           topic, qos, self.maximum_qos)
            qos = self.maximum_qos
        if retain and not self.retain_available:
            raise PublishFailed(topic, RETAIN_NOT_SUPPORTED,
                                "Retain not supported: the broker's CONNACK says Retain"
                                " Available 0")
        alias = (properties or {}).get("topic_alias")
        if alias is not None and not 0 < alias <= self.topic_alias_maximum:
            raise PublishFailed(topic, TOPIC_ALIAS_INVALID,
                                f"Topic Alias {alias} invalid: the broker's Topic Alias Maximum"
                                f" is {self.topic_alias_maximum}")
        return qos

    def check_subscribe(self, topic_filters: Iterable[str],
                        properties: Mapping[str, Any] | None) -> None:
        """SubscribeFailed, before anything is sent, for what the broker does not support."""
        if (properties or {}).get("subscription_identifier") is not None and \
                not self.subscription_identifiers_available:
            raise SubscribeFailed(next(iter(topic_filters), ""), SUBSCRIPTION_IDS_NOT_SUPPORTED,
                                  "Subscription Identifiers not supported (CONNACK)")
        for topic_filter in topic_filters:
            shared = topic_filter.startswith("$share/")
            if shared and not self.shared_subscription_available:
                raise SubscribeFailed(topic_filter, SHARED_NOT_SUPPORTED,
                                      "Shared Subscriptions not supported (CONNACK)")
            name = topic_filter.split("/", 2)[2] if shared and topic_filter.count("/") >= 2 \
                else topic_filter
            if not self.wildcard_subscription_available and ("+" in name or "#" in name):
                raise SubscribeFailed(topic_filter, WILDCARDS_NOT_SUPPORTED,
                                      "Wildcard Subscriptions not supported (CONNACK)")
