"""Connection settings, statistics and the transport enum (the reference design's
``ConnectionConfig``, ``ConnectionStats`` and ``TransportType``, fields kept)."""

from __future__ import annotations

import enum
import json
import os
import ssl
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._tls import load_tls_material
from .codec import Will
from .errors import TLSFileError

__all__ = ["TransportType", "ConnectionConfig", "ConnectionStats"]


class TransportType(str, enum.Enum):  # noqa: UP042 - str() stays 'TransportType.QUIC'
    QUIC = "quic"
    TCP_TLS = "tcp_tls"


@dataclass(kw_only=True)
class ConnectionConfig:
    """Where and how to connect. Ports default to EMQX's: QUIC 14567, MQTT over TLS 8884.

    Every field is a keyword (29 of them in no order a reader could keep). The file format
    (``from_file``) has the same names; ``tls_context`` alone cannot come from a file."""

    host: str = "localhost"
    quic_port: int = 14567
    tcp_port: int = 8884
    device_id: str = ""
    # Empty: the device_id; both empty: the id an MQTT 5 broker assigns, or for MQTT 3.1.1
    # a random "mqttquic-..." one.
    client_id: str = ""
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
    zero_rtt: bool = True  # resume TLS with a stored ticket and send CONNECT as 0-RTT data
    # With a ticket that allows 0-RTT: connect() returns once CONNECT is in flight, and
    # QoS 1/2 publishes made before the CONNACK ride in the 0-RTT flight with it (QoS 0,
    # subscriptions: after the CONNACK). See the README's "early publish".
    early_publish: bool = False
    max_packet_size: int = 268_435_460
    transport: str = "auto"  # "auto": QUIC first, TCP+TLS fallback; "quic" or "tcp" only
    head_start: float = 0.25  # seconds QUIC has before TCP+TLS starts too
    # While on TCP, probe QUIC: first after 0.5 s, then doubling up to this (0: never).
    quic_probe_interval: float = 4.0
    tls_version: str | None = None  # minimum TLS version for TCP ("1.2" or "1.3")
    reconnect: bool = True  # reconnect by itself after an unexpected loss
    reconnect_min_delay: float = 0.5  # backoff: exponential from here, with full jitter
    reconnect_max_delay: float = 30.0
    max_offline_queue: int = 1000  # publishes that may wait while disconnected
    # Deadline of publish/subscribe/unsubscribe, from the call (offline waits included).
    operation_timeout: float = 30.0
    # Store and forward: QoS 1/2 messages kept in this SQLite file until acknowledged
    # (None: in memory only). "full" sync makes each write survive a power cut.
    outbox: str | None = None
    outbox_sync: str = "normal"
    outbox_max_messages: int = 100_000
    outbox_max_bytes: int = 64 * 1024 * 1024
    outbox_drop_oldest: bool = False  # full: drop the oldest (counted), not refuse
    # Times one publish may be cut off by a dying connection (or stream) before it is
    # given up as a publish the broker will not take (PublishFailed).
    max_publish_attempts: int = 3
    # A publish above the broker's Maximum QoS (MQTT 5 CONNACK): False refuses it at once
    # (PublishFailed 0x9B), True sends it at the broker's maximum and logs a warning.
    downgrade_qos: bool = False
    # The Will: a codec.Will, or (in a file) {"topic", "payload", "qos", "retain",
    # "properties"} with the payload as publish() takes it (bytes, str, or JSON).
    will: Will | None = None
    # MQTT 5 CONNECT: how long the broker keeps the session after the connection ends
    # (seconds; None: the broker's default, 0), and any other CONNECT properties.
    session_expiry_interval: int | None = None
    connect_properties: dict[str, Any] | None = None
    # TLS beyond files: CA certificates in memory (PEM text), the client key's password,
    # and an ssl.SSLContext used as it is for TCP+TLS (aiomqtt's tls_context, paho's
    # tls_set_context); QUIC takes its verification mode and CA certificates.
    ca_data: str | None = None
    key_password: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.transport not in ("auto", "quic", "tcp"):
            raise ValueError(f"transport must be 'auto', 'quic' or 'tcp', not {self.transport!r}")
        if self.outbox_sync not in ("normal", "full"):
            raise ValueError(f"outbox_sync must be 'normal' or 'full', not {self.outbox_sync!r}")
        if self.outbox_max_messages < 1 or self.outbox_max_bytes < 1:
            raise ValueError("outbox_max_messages and outbox_max_bytes must be positive")
        if self.tls_version not in (None, "1.2", "1.3"):
            raise ValueError(f"tls_version must be '1.2' or '1.3', not {self.tls_version!r}")
        if self.protocol_version not in (4, 5):
            raise ValueError(f"protocol_version must be 4 (MQTT 3.1.1) or 5, not {self.protocol_version!r}")
        if not 1 <= self.max_streams <= 9:
            raise ValueError("max_streams must be 1..9 (EMQX allows 10 streams, control included)")
        if not 0 <= self.keepalive <= 0xFFFF:
            raise ValueError("keepalive must be 0..65535 seconds")
        if not 0 < self.operation_timeout < float("inf"):
            raise ValueError("operation_timeout must be a positive number of seconds")
        if self.max_publish_attempts < 1:
            raise ValueError("max_publish_attempts must be at least 1")
        if isinstance(self.will, dict):
            self.will = _will_from(self.will)
        if self.will is not None and not isinstance(self.will, Will):
            raise TypeError(f"will must be a Will or a dict, not {type(self.will).__name__}")
        if self.protocol_version != 5 and (self.session_expiry_interval is not None
                                           or self.connect_properties
                                           or (self.will is not None and self.will.properties)):
            raise ValueError("session_expiry_interval, connect_properties and Will properties"
                             " need MQTT 5 (protocol_version=5)")
        if self.tls_context is not None:
            if not isinstance(self.tls_context, ssl.SSLContext):
                raise TypeError("tls_context must be an ssl.SSLContext, not"
                                f" {type(self.tls_context).__name__}")
            if self.insecure:
                raise ValueError("insecure=True with a tls_context: set verify_mode and"
                                 " check_hostname on the context instead")

    def connect_properties_dict(self) -> dict[str, Any] | None:
        """The MQTT 5 CONNECT properties: ``connect_properties`` and the session expiry."""
        props = dict(self.connect_properties or {})
        if self.session_expiry_interval is not None:
            props["session_expiry_interval"] = self.session_expiry_interval
        return props or None

    @property
    def effective_client_id(self) -> str:
        """``client_id``, else ``device_id``. With neither: MQTT 5 sends an empty one and
        keeps the id the broker assigns (CONNACK), MQTT 3.1.1 makes a random one."""
        if self.client_id:
            return self.client_id
        if self.device_id:
            return self.device_id
        if self.protocol_version == 5:
            return ""
        self.client_id = f"mqttquic-{uuid.uuid4().hex[:12]}"
        return self.client_id

    def ticket_path(self) -> str:
        return os.path.expanduser(self.session_ticket_file)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ConnectionConfig:
        """Read a JSON config: this class's fields (``mqtt-quic-config.example.json``), or the
        credential bundle IoT platforms ship as ``mqtt-quic-config.json``.

        Relative file paths are resolved against the file's folder; an unknown key is a
        ValueError that names it. The TLS files it names are read: one that cannot be
        used is a TLSFileError (a ConnectError) that names it and this file."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: the top level must be a JSON object")
        folder = source.resolve().parent
        if _BUNDLE_KEYS & data.keys():
            settings = _from_bundle(data, source)
        else:
            data.pop("$comment", None)
            known = {f.name for f in fields(cls)} - RUNTIME_ONLY
            for key in data:
                if key in RUNTIME_ONLY:
                    raise ValueError(f"{source}: {key!r} is set in code only, not in a file")
                if key not in known:
                    raise ValueError(f"{source}: unknown key {key!r}")
            settings = dict(data)
        for key in ("ca_file", "certfile", "keyfile", "session_ticket_file"):
            value = settings.get(key)
            if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
                settings[key] = str(folder / value)
        config = cls(**settings)
        try:  # the TLS files it names: a bad one is found now, not at the first connect
            load_tls_material(config)
        except TLSFileError as exc:
            raise TLSFileError(exc.setting, exc.path, f"{exc.cause} (set in {source})") from None
        return config


# Fields that are Python objects, not JSON: no config file sets them.
RUNTIME_ONLY = frozenset({"tls_context"})


def _will_from(data: dict[str, Any]) -> Will:
    unknown = set(data) - {"topic", "payload", "qos", "retain", "properties"}
    if unknown or "topic" not in data:
        raise ValueError(f"a will needs a topic, and takes payload, qos, retain and properties"
                         f" (unknown: {sorted(unknown)})" if unknown else "a will needs a topic")
    return Will(data["topic"], data.get("payload", b""), int(data.get("qos", 0)),
                bool(data.get("retain", False)), data.get("properties"))


# Keys that only the platform bundle shape has.
_BUNDLE_KEYS = {"port", "tls", "auth", "connection"}
_BUNDLE_SECTIONS: dict[str, set[str]] = {
    "": {"host", "port", "transport", "tls", "auth", "connection", "device_id", "client_id",
         "$comment"},
    "tls": {"version", "ca_file", "verify_server", "cert_file", "key_file", "server_name"},
    "auth": {"username", "password"},
    "connection": {"keepalive", "clean_session", "connect_timeout"},
}
_BUNDLE_TRANSPORTS = {"quic": "auto", "tcp": "tcp", "tls": "tcp", "tcp_tls": "tcp", "mqtts": "tcp",
                      "ssl": "tcp"}


def _from_bundle(data: dict[str, Any], source: Path) -> dict[str, Any]:
    for section, allowed in _BUNDLE_SECTIONS.items():
        block = data if not section else data.get(section, {})
        if not isinstance(block, dict):
            raise ValueError(f"{source}: {section!r} must be an object")
        for key in block:
            if key not in allowed:
                name = f"{section}.{key}" if section else key
                raise ValueError(f"{source}: unknown key {name!r}")
    transport = str(data.get("transport", "quic")).lower()
    if transport not in _BUNDLE_TRANSPORTS:
        raise ValueError(f"{source}: unknown transport {transport!r}")
    settings: dict[str, Any] = {"transport": _BUNDLE_TRANSPORTS[transport]}
    for key in ("host", "device_id", "client_id"):
        if key in data:
            settings[key] = data[key]
    if "port" in data:
        settings["quic_port" if transport == "quic" else "tcp_port"] = int(data["port"])
    tls = data.get("tls", {})
    if "version" in tls:
        version = str(tls["version"]).replace("TLSv", "").replace("tlsv", "")
        settings["tls_version"] = version
    if "ca_file" in tls:
        settings["ca_file"] = tls["ca_file"]
    if "verify_server" in tls:
        settings["insecure"] = not bool(tls["verify_server"])
    for ours, theirs in (("certfile", "cert_file"), ("keyfile", "key_file"),
                         ("server_name", "server_name")):
        if theirs in tls:
            settings[ours] = tls[theirs]
    auth = data.get("auth", {})
    for key in ("username", "password"):
        if key in auth:
            settings[key] = auth[key]
    connection = data.get("connection", {})
    if "keepalive" in connection:
        settings["keepalive"] = int(connection["keepalive"])
    if "clean_session" in connection:
        settings["clean_start"] = bool(connection["clean_session"])
    if "connect_timeout" in connection:
        settings["connect_timeout"] = float(connection["connect_timeout"])
    return settings


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
    migrations: int = 0  # QUIC connection moved to a new local socket (Client.migrate())
    messages_dropped: int = 0  # QoS 0 messages a full queue could not take (never QoS 1/2)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["transport"] = self.transport.value
        return out
