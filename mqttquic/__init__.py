"""mqttquic: MQTT over QUIC for asyncio, with TCP+TLS as the fallback.

Only the errors load with the package: ``import mqttquic.codec`` stays free of
asyncio, aioquic and paho-mqtt (devices that need just the codec, start-up
time), and the client, the gateway and the transports load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConnectError,
    ConnectionRefused,
    MalformedPacket,
    MQTTQUICError,
    OfflineQueueFull,
    OperationTimeout,
    PacketTooLarge,
    PathDead,
    PublishFailed,
    StreamClosed,
    StreamLimitReached,
    StreamRefused,
    SubscribeFailed,
    TLSFileError,
)

if TYPE_CHECKING:
    from .changes import ConnectionChange
    from .client import Client
    from .codec import Subscription, Will
    from .compat import MQTTQUICAdvancedClient
    from .config import ConnectionConfig, ConnectionStats, TransportType
    from .gateway import Gateway, GatewayConfig
    from .message import Message
    from .outbox import OutboxError, OutboxFull
    from .topics import topic_matches

__version__ = "0.1.0"

_LAZY = {
    "Client": "client", "MQTTQUICAdvancedClient": "compat",
    "ConnectionConfig": "config", "ConnectionStats": "config", "TransportType": "config",
    "Message": "message", "Subscription": "codec", "Will": "codec",
    "Gateway": "gateway", "GatewayConfig": "gateway", "ConnectionChange": "changes",
    "topic_matches": "topics", "OutboxError": "outbox", "OutboxFull": "outbox",
}

__all__ = [
    "__version__",
    "Client", "MQTTQUICAdvancedClient", "ConnectionConfig", "ConnectionStats", "TransportType",
    "Message", "Subscription", "Will", "Gateway", "GatewayConfig", "ConnectionChange",
    "topic_matches",
    "MQTTQUICError", "MalformedPacket", "PacketTooLarge", "ConnectError",
    "ConnectionRefused", "PublishFailed", "OperationTimeout", "StreamLimitReached",
    "StreamClosed", "StreamRefused", "OfflineQueueFull", "PathDead", "TLSFileError",
    "SubscribeFailed", "OutboxError", "OutboxFull",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mqttquic' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
