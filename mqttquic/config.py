"""Connection settings, statistics and the transport enum (names from the seed document)."""

from __future__ import annotations

import enum
import os
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TransportType", "ConnectionConfig", "ConnectionStats"]


class TransportType(str, enum.Enum):
    QUIC = "quic"
    TCP_TLS = "tcp_tls"


@dataclass
class ConnectionConfig:
    """Where and how to connect. Ports default to EMQX's: QUIC 14567, MQTT over TLS 8884."""

    host: str = "localhost"
    quic_port: int = 14567
    tcp_port: int = 8884
    device_id: str = ""
    client_id: str = ""  # empty: the device_id; both empty: a random "mqttquic-..." id
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # None: the system's trust store
    certfile: str | None = None  # client certificate (mutual TLS)
    keyfile: str | None = None
    insecure: bool = False  # True: do not verify the server certificate (never by default)
    server_name: str | None = None  # TLS SNI / verification name; default: host
    keepalive: int = 60
    clean_start: bool = True
    protocol_version: int = 4  # 4 = MQTT 3.1.1 (as paho and mosquitto default), 5 = MQTT 5.0
    connect_timeout: float = 10.0
    multi_stream: bool = True  # False: everything on the control stream (single-stream mode)
    max_streams: int = 4  # data streams per connection; EMQX allows 10 streams in all
    session_ticket_file: str = ".mqtt_session_ticket"
    max_packet_size: int = 268_435_460

    def __post_init__(self) -> None:
        if self.protocol_version not in (4, 5):
            raise ValueError(f"protocol_version must be 4 (MQTT 3.1.1) or 5, not {self.protocol_version!r}")
        if not 1 <= self.max_streams <= 9:
            raise ValueError("max_streams must be 1..9 (EMQX allows 10 streams, control included)")
        if not 0 <= self.keepalive <= 0xFFFF:
            raise ValueError("keepalive must be 0..65535 seconds")

    @property
    def effective_client_id(self) -> str:
        if self.client_id:
            return self.client_id
        if self.device_id:
            return self.device_id
        self.client_id = f"mqttquic-{uuid.uuid4().hex[:12]}"
        return self.client_id

    def ticket_path(self) -> str:
        return os.path.expanduser(self.session_ticket_file)


@dataclass
class ConnectionStats:
    """What happened on the connection, measured (not assumed)."""

    transport: TransportType = TransportType.QUIC
    connected: bool = False
    connect_time: float = 0.0  # seconds from starting to connect to CONNACK, last connect
    reconnect_count: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    last_activity: float = 0.0  # time.time() of the last packet sent or received
    zero_rtt_used: bool = False  # the server accepted 0-RTT early data
    session_resumed: bool = False  # the TLS session was resumed from a ticket
    bytes_sent: int = 0  # MQTT bytes, this connection
    bytes_received: int = 0
    rtt_ms: float | None = None  # QUIC smoothed RTT
    streams_open: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["transport"] = self.transport.value
        return out
