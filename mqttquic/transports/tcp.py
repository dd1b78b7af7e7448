"""MQTT over TCP+TLS with paho-mqtt 2.x, driven by the asyncio loop
(``_paho_loop.PahoSockets``; only the blocking TCP+TLS connect runs in a worker thread).

The transport offers what the QUIC one offers: publish awaits the ack for QoS
1 and 2, subscribe returns the granted QoS, messages go to the same queue.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import _trace
from .._inflight import InFlight, StoredFlow, release_when_recorded
from .._tls import load_tls_material
from ..codec import Publish, Subscribe, Subscription, Unsubscribe, Will, encode
from ..config import ConnectionConfig, TransportType
from ..enums import PacketType
from ..errors import (
    ConnectError,
    ConnectionRefused,
    MalformedPacket,
    MQTTQUICError,
    PublishFailed,
    TLSFileError,
)
from ..limits import ServerLimits
from ..message import Message
from ..properties import PROPERTIES
from ..reason_codes import reason_code_name
from ..session import check_publish_size
from ._paho_client import PahoClient
from ._paho_loop import PahoSockets
from .base import Transport, connect_packet

__all__ = ["PahoTransport", "connect_tcp", "tls_context"]

logger = logging.getLogger("mqttquic.tcp")


class _NamedContext(ssl.SSLContext):
    """An SSLContext that checks ``server_name`` instead of the host paho dials."""

    server_name: str | None = None

    def wrap_socket(self, sock: Any, server_side: bool = False,  # type: ignore[override]
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | None = None, session: Any = None) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, do_handshake_on_connect,
                                   suppress_ragged_eofs, self.server_name or server_hostname,
                                   session)


def tls_context(config: ConnectionConfig) -> ssl.SSLContext:
    """The SSLContext of the TCP+TLS connection: ``config.tls_context`` as it is, or one
    made from the config (CA file and data, client certificate, minimum version).

    The files are read and checked first (``load_tls_material``): a bad one is a
    TLSFileError that names it, before any packet."""
    if config.tls_context is not None:
        return config.tls_context
    tls = load_tls_material(config)
    context = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = config.server_name
    if config.tls_version == "1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif tls.ca_pem is not None:
        context.load_verify_locations(cadata=tls.ca_pem)
    else:
        context.load_default_certs()
    if config.certfile:
        try:
            context.load_cert_chain(config.certfile, config.keyfile, config.key_password)
        except (OSError, ssl.SSLError) as exc:  # changed since it was checked, or OpenSSL differs
            raise TLSFileError("certfile", config.certfile, str(exc)) from None
    return context


# paho reports an MQTT 3.1.1 CONNACK return code in MQTT 5 numbering
# (paho.mqtt._packet.convert_connack_rc_to_reason_code); this undoes it.
_V311_FROM_V5 = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}


def v311_return_code(paho_code: int) -> int:
    """The MQTT 3.1.1 CONNACK return code behind the MQTT 5 code paho reports for it
    (0x87 "Not authorized" -> 5); codes that are already 3.1.1 pass unchanged."""
    if paho_code < 0x80:
        return paho_code
    return _V311_FROM_V5.get(paho_code, 3)  # "server unavailable" for paho's catch-all


def _check(packet: Any, protocol_version: int) -> None:
    """Our codec's verdict on ``packet`` before paho sees it: a bad topic, QoS or property
    is the same MalformedPacket over TCP+TLS as over QUIC (whose session encodes it)."""
    encode(packet, protocol_version)


def _paho(what: str, call: Callable[[], Any]) -> Any:
    """A paho-mqtt call whose exceptions do not reach the user as paho's own."""
    try:
        return call()
    except MQTTQUICError:
        raise
    except (ValueError, TypeError) as exc:
        raise MalformedPacket(f"{what}: {exc}") from exc
    except Exception as exc:
        raise ConnectError(f"{what} failed in paho-mqtt: {exc}") from exc


def _paho_names() -> dict[str, str]:
    """Our property names (``maximum_qos``) to paho's attributes (``MaximumQoS``), by the
    identifier both tables carry: spelling them from each other gets some wrong."""
    names = Properties(PacketTypes.CONNACK).names  # type: ignore[no-untyped-call]
    return {PROPERTIES[identifier].name: name.replace(" ", "")
            for name, identifier in names.items() if identifier in PROPERTIES}


_PAHO_NAMES = _paho_names()
_OUR_NAMES = {paho_name: ours for ours, paho_name in _PAHO_NAMES.items()}


def _properties(packet_type: int, values: dict[str, Any] | None) -> Properties | None:
    """Our snake_case property dict as paho Properties."""
    if not values:
        return None
    props = Properties(packet_type)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        if name == "user_property":
            value = list(value.items()) if isinstance(value, dict) else list(value)
        setattr(props, _PAHO_NAMES[name], value)
    return props


def _from_paho(props: Any) -> dict[str, Any]:
    """paho Properties as our snake_case property dict (the codec's shape)."""
    if props is None:
        return {}
    return {ours: getattr(props, attribute) for attribute, ours in _OUR_NAMES.items()
            if hasattr(props, attribute)}


def _paho_client(config: ConnectionConfig, will: Will | None) -> PahoClient:
    """A paho client for ``config``: TLS, credentials, Will; acknowledgements manual."""
    v5 = config.protocol_version == 5
    client = PahoClient(CallbackAPIVersion.VERSION2,
                        client_id=config.effective_client_id,
                        clean_session=None if v5 else config.clean_start,
                        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                        reconnect_on_failure=False)
    client.tls_set_context(tls_context(config))
    if config.insecure:
        client.tls_insecure_set(True)
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if will is not None:
        _paho("will", lambda: client.will_set(
            will.topic, will.payload, will.qos, will.retain,
            _properties(PacketTypes.WILLMESSAGE, will.properties)))
    client.max_inflight_messages_set(65535)
    # A message is acknowledged when the application takes it (Message._acknowledge).
    client.manual_ack_set(True)
    client.max_queued_messages_set(0)
    return client


class PahoTransport(Transport):
    """One paho-mqtt client on one TCP+TLS connection."""

    transport_type = TransportType.TCP_TLS

    def __init__(self, config: ConnectionConfig, will: Will | None = None,
                 properties: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        # The CONNECT as our codec sees it (Will topic, properties): the same errors as QUIC.
        _check(connect_packet(config, will, properties), config.protocol_version)
        self._loop = asyncio.get_running_loop()
        client = _paho_client(config, will)
        if _trace.enabled():
            # paho traces its packets itself ("Sending PUBLISH (d0, q1, ...)"): in
            # mosquitto's words, on the same logger as the QUIC session's trace.
            client.on_log = self._paho_log
        self._sockets = PahoSockets(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_held_pubrec = self._on_held_pubrec
        self._client = client
        self._connect_properties = properties
        self._connack: asyncio.Future[Any] = self._loop.create_future()
        self._disconnected: asyncio.Future[None] = self._loop.create_future()
        self._in_flight = InFlight()  # by paho's message id, on channel 0
        client.waits_on = lambda mid: (0, mid) in self._in_flight
        self._connected = False
        self._closing = False
        self._limits = ServerLimits()  # MQTT's defaults until the CONNACK says more

    def _paho_log(self, client: paho.Client, userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_DEBUG and text.startswith(("Sending ", "Received ")):
            _trace.logger.debug("Client %s %s", self.config.effective_client_id or "(no id)",
                                text[0].lower() + text[1:])

    # --- paho's MQTT callbacks (event loop thread) -----------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if not self._connack.done():
            self._connack.set_result((reason, flags, properties))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        was_connected, self._connected = self._connected, False
        error = ConnectError(f"TCP+TLS connection lost: {reason}")
        self._in_flight.fail(error)
        if not self._connack.done():
            self._connack.set_exception(error)
        if not self._disconnected.done():
            self._disconnected.set_result(None)
        if was_connected and not self._closing:
            # Reported, not logged: the connector logs a loss once, with what it does next
            # (and a planned move to QUIC quietly).
            logger.debug("%s", error)
            self.on_lost(error)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        self._in_flight.resolve(0, mid, reason.value if reason is not None else 0)

    def _on_held_pubrec(self, mid: int) -> None:
        release_when_recorded(self._in_flight, 0, mid, partial(self._release, mid), logger)

    def _release(self, mid: int) -> None:
        if self._connected:  # else the next connection sends the PUBLISH again, with DUP
            self._client.release_stored(mid)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        codes = reasons if isinstance(reasons, list) else [reasons]
        self._in_flight.resolve(0, mid, [code.value for code in codes])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        ack = partial(self._acknowledge, message.mid, message.qos) if message.qos else None
        self.on_message(Message(message.topic, bytes(message.payload), message.qos,
                                bool(message.retain),
                                _from_paho(getattr(message, "properties", None)), 0, ack))

    def _acknowledge(self, mid: int, qos: int) -> None:
        """The application took the message: paho's manual acknowledgement (PUBACK for
        QoS 1, PUBCOMP for QoS 2), on this connection only."""
        if self._connected:
            self._client.ack(mid, qos)

    # --- Transport ------------------------------------------------------------------------------

    async def connect(self) -> None:
        config = self.config
        started = time.monotonic()
        where = f"{config.host}:{config.tcp_port}"
        props = _properties(PacketTypes.CONNECT, self._connect_properties)
        # TCP connect and TLS handshake block: a worker thread does them.
        opening = self._loop.run_in_executor(None, lambda: self._client.connect(
            config.host, config.tcp_port, config.keepalive,
            clean_start=config.clean_start if config.protocol_version == 5
            else paho.MQTT_CLEAN_START_FIRST_ONLY, properties=props))
        try:
            await asyncio.wait_for(asyncio.shield(opening), config.connect_timeout)
            # The socket is open and CONNECT queued: from here on the loop drives it.
            if not self._sockets.watch():
                raise ConnectError(f"TCP+TLS connect to {where} failed: no socket")
            reason, flags, connack_properties = await asyncio.wait_for(
                self._connack, max(0.1, config.connect_timeout - (time.monotonic() - started)))
        except (TimeoutError, asyncio.CancelledError) as exc:
            # The thread cannot be stopped: close what it opens once it is done.
            opening.add_done_callback(lambda _: self.abort())
            self.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ConnectError(f"TCP+TLS connect to {where} timed out after"
                               f" {config.connect_timeout} s") from None
        except ssl.SSLError as exc:
            self.abort()
            raise ConnectError(f"TCP+TLS connect to {where} failed: TLS: {exc}") from exc
        except (OSError, ValueError) as exc:
            self.abort()
            raise ConnectError(f"TCP+TLS connect to {where} failed: {exc}") from exc
        if reason.is_failure:
            self.abort()
            # The broker's own code, as QUIC reports it: paho gives a 3.1.1 return code
            # in MQTT 5 numbering (5 "not authorized" as 0x87).
            version = config.protocol_version
            code = reason.value if version == 5 else v311_return_code(reason.value)
            raise ConnectionRefused(code, reason_code_name(code, PacketType.CONNACK, version))
        # What the broker allows (MQTT 5 CONNACK), checked before each packet as QUIC does.
        self._limits = ServerLimits.from_connack(_from_paho(connack_properties))
        # MQTT 5: no more QoS 1/2 in flight than the broker's Receive Maximum (paho
        # queues the rest and sends each when a flow completes); a broker drops or
        # disconnects for what exceeds it.
        self._client.set_window(self._limits.receive_maximum)
        self._connected = True
        self.session_present = bool(getattr(flags, "session_present", False))
        self.connect_time = time.monotonic() - started
        self._sockets.start_housekeeping()
        logger.info("connected over TCP+TLS to %s in %.1f ms", where, self.connect_time * 1000)

    @property
    def limits(self) -> ServerLimits:
        return self._limits

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None,
                      flow: StoredFlow | None = None) -> None:
        if not self._connected:
            raise ConnectError("not connected")
        packet = Publish(topic, payload, qos, retain, False, 1 if qos else None, properties)
        _check(packet, self.config.protocol_version)
        qos = self._limits.publish_qos(topic, qos, retain, properties,
                                      downgrade=self.config.downgrade_qos)
        check_publish_size(packet, self.config.protocol_version, self._limits.maximum_packet_size)
        paho_properties = _properties(PacketTypes.PUBLISH, properties)
        if flow is not None and qos:
            if flow.released and qos == 2:
                if flow.gone_with_session(self.session_present, topic):
                    return
                rc, mid = self._client.release_stored(flow.packet_id), flow.packet_id
            else:
                info = self._client.publish_stored(
                    flow.packet_id, topic, payload, qos, retain, flow.dup, paho_properties,
                    hold_release=flow.received is not None and not self.config.clean_start)
                rc, mid = info.rc, info.mid
                if flow.received is not None and rc == paho.MQTT_ERR_SUCCESS:
                    self._in_flight.received[0, mid] = flow.received
        else:
            info = _paho("publish", lambda: self._client.publish(
                topic, payload, qos, retain, paho_properties))
            rc, mid = info.rc, info.mid
        code: int = await self._acked(f"publish to {topic!r}", rc, mid)
        if not (flow.succeeded(code) if flow is not None else code < 0x80):
            raise PublishFailed(topic, code, reason_code_name(code, PacketType.PUBACK))

    async def subscribe(self, subscriptions: list[Subscription],
                        properties: dict[str, Any] | None = None) -> list[int]:
        if not self._connected:
            raise ConnectError("not connected")
        _check(Subscribe(1, subscriptions, properties), self.config.protocol_version)
        self._limits.check_subscribe([s.topic_filter for s in subscriptions], properties)
        if self.config.protocol_version == 5:
            topics: list[Any] = [(s.topic_filter, SubscribeOptions(
                qos=s.qos, noLocal=s.no_local, retainAsPublished=s.retain_as_published,
                retainHandling=s.retain_handling)) for s in subscriptions]
        else:
            topics = [(s.topic_filter, s.qos) for s in subscriptions]
        result, mid = _paho("subscribe", lambda: self._client.subscribe(
            topics, properties=_properties(PacketTypes.SUBSCRIBE, properties)))
        codes: list[int] = await self._acked("subscribe", result, mid)
        return codes

    async def unsubscribe(self, topic_filters: list[str],
                          properties: dict[str, Any] | None = None) -> list[int]:
        if not self._connected:
            raise ConnectError("not connected")
        _check(Unsubscribe(1, topic_filters, properties), self.config.protocol_version)
        result, mid = _paho("unsubscribe", lambda: self._client.unsubscribe(
            topic_filters, properties=_properties(PacketTypes.UNSUBSCRIBE, properties)))
        codes: list[int] = await self._acked("unsubscribe", result, mid)
        return codes

    async def _acked(self, what: str, result: int, mid: int | None) -> Any:
        """What paho's callback reports for ``mid`` (set in _on_publish/_on_subscribe)."""
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectError(f"{what} failed: {paho.error_string(result)}")
        return await self._in_flight.wait(0, mid)

    async def disconnect(self, reason_code: int = 0,
                         properties: dict[str, Any] | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        if self._connected:
            if self.config.protocol_version == 5:
                self._client.disconnect(
                    ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code),
                    _properties(PacketTypes.DISCONNECT, properties))
            else:
                self._client.disconnect()
            try:
                await asyncio.wait_for(asyncio.shield(self._disconnected), 2.0)
            except TimeoutError:
                pass
        self._stop()

    def abort(self) -> None:
        self._closing = True
        self._stop()

    def _stop(self) -> None:
        self._connected = False
        self._sockets.stop()
        self._in_flight.fail(ConnectError("connection closed"))

    @property
    def is_connected(self) -> bool:
        return self._connected and not self._closing

    @property
    def bytes_sent(self) -> int:
        return self._sockets.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._sockets.bytes_received


async def connect_tcp(config: ConnectionConfig, *, will: Will | None = None,
                      properties: dict[str, Any] | None = None) -> PahoTransport:
    """MQTT over TCP+TLS to ``config.host:config.tcp_port`` through paho-mqtt."""
    if not watches_sockets(asyncio.get_running_loop()):
        raise ConnectError(
            "the TCP+TLS transport needs an event loop that watches sockets (add_reader), which"
            " Windows' default ProactorEventLoop does not: call asyncio.set_event_loop_policy("
            "asyncio.WindowsSelectorEventLoopPolicy()) first, or use transport='quic'")
    transport = PahoTransport(config, will, properties)
    try:
        await transport.connect()
    except asyncio.CancelledError:
        transport.abort()
        raise
    return transport


def watches_sockets(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop.add_reader`` works: not on Windows' ProactorEventLoop (its default)."""
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    return proactor is None or not isinstance(loop, proactor)
