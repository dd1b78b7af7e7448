"""MQTT control packets: the classes and their wire format (sections 3.1 to 3.15).

This one source serves both codec twins. Pure Python imports it as
``_packets_py``; the build compiles the same file as ``_packets_c`` (a symlink)
with ``_packets_c.pxd`` beside it, which turns every class into an extension
type, so that the Cython codec fills packets with C struct writes. Keep the
code here valid for both: plain Python, no ``cython`` import.

Hot paths (PUBLISH and the acks) are also written in ``_codec.pyx``; the
functions here are the reference that the tests hold both to.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._wire import (
    encode_varint,
    pack_binary,
    pack_string,
    pack_u16,
    payload_bytes,
    read_binary,
    read_byte,
    read_string,
    read_u16,
)
from .enums import PacketType
from .errors import MalformedPacket
from .properties import WILL, decode_properties, encode_properties
from .topics import validate_topic_filter, validate_topic_name

__all__ = [
    "Packet", "Will", "Subscription", "Connect", "Connack", "Publish", "Puback", "Pubrec",
    "Pubrel", "Pubcomp", "Subscribe", "Suback", "Unsubscribe", "Unsuback", "Pingreq",
    "Pingresp", "Disconnect", "Auth", "encode_publish", "decode_body", "frame",
]


def frame(first_byte: int, body: bytes) -> bytes:
    """Prefix ``body`` with the fixed header."""
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def _props(properties: dict[str, Any] | None) -> dict[str, Any]:
    return {} if properties is None else properties


def _v5_only_properties(properties: dict[str, Any], protocol_version: int, name: str) -> None:
    if properties and protocol_version < 5:
        raise MalformedPacket(f"{name} properties need MQTT 5, not protocol level {protocol_version}")


def _check_packet_id(packet_id: Any, name: str) -> int:
    if not isinstance(packet_id, int) or not 1 <= packet_id <= 0xFFFF:
        raise MalformedPacket(f"{name} packet identifier must be 1..65535, not {packet_id!r} [MQTT-2.2.1-3]")
    return packet_id


def _read_packet_id(body: bytes, pos: int, name: str) -> tuple[int, int]:
    packet_id, pos = read_u16(body, pos, f"{name} packet identifier")
    if packet_id == 0:
        raise MalformedPacket(f"{name} packet identifier is 0 [MQTT-2.2.1-3]")
    return packet_id, pos


def _no_trailing(body: bytes, pos: int, name: str) -> None:
    if pos != len(body):
        raise MalformedPacket(f"{len(body) - pos} trailing bytes after the {name} packet")


class Packet:
    """Base of all packets: equality and repr over ``_fields``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for name in self._fields:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq

    def __repr__(self) -> str:
        # Passwords never reach logs, not even through a repr.
        args = ", ".join(
            f"{name}='***'" if name == "password" and getattr(self, name) is not None
            else f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({args})"


class Will(Packet):
    """The Will Message of a CONNECT."""

    __slots__ = ("topic", "payload", "qos", "retain", "properties")
    _fields = __slots__

    def __init__(self, topic: str, payload: Any = b"", qos: int = 0, retain: bool = False,
                 properties: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.payload = payload_bytes(payload)  # bytes, str or JSON, as publish() takes
        self.qos = qos
        self.retain = bool(retain)
        self.properties = _props(properties)


class Subscription(Packet):
    """One topic filter of a SUBSCRIBE with its options (section 3.8.3.1)."""

    __slots__ = ("topic_filter", "qos", "no_local", "retain_as_published", "retain_handling")
    _fields = __slots__

    def __init__(self, topic_filter: str, qos: int = 0, no_local: bool = False,
                 retain_as_published: bool = False, retain_handling: int = 0) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = bool(no_local)
        self.retain_as_published = bool(retain_as_published)
        self.retain_handling = retain_handling


class Connect(Packet):
    """CONNECT. ``protocol_version`` is the level it carries (4 = 3.1.1, 5 = 5.0)."""

    packet_type = PacketType.CONNECT
    __slots__ = ("client_id", "clean_start", "keepalive", "username", "password", "will",
                 "properties", "protocol_version")
    _fields = __slots__

    def __init__(self, client_id: str = "", clean_start: bool = True, keepalive: int = 60,
                 username: str | None = None, password: bytes | None = None,
                 will: Will | None = None, properties: dict[str, Any] | None = None,
                 protocol_version: int = 4) -> None:
        self.client_id = client_id
        self.clean_start = bool(clean_start)
        self.keepalive = keepalive
        self.username = username
        self.password = password
        self.will = will
        self.properties = _props(properties)
        self.protocol_version = protocol_version

    def encode(self, protocol_version: int = 4) -> bytes:
        # A CONNECT always carries its own protocol level.
        version = self.protocol_version
        if version not in (4, 5):
            raise MalformedPacket(f"unsupported protocol level {version}")
        if not 0 <= self.keepalive <= 0xFFFF:
            raise MalformedPacket(f"keepalive {self.keepalive} out of range 0..65535")
        if self.password is not None and self.username is None and version < 5:
            raise MalformedPacket("password without user name in MQTT 3.1.1 [MQTT-3.1.2-22]")
        _v5_only_properties(self.properties, version, "CONNECT")
        flags = 0x02 if self.clean_start else 0
        will = self.will
        if will is not None:
            if will.qos not in (0, 1, 2):
                raise MalformedPacket(f"will QoS {will.qos} [MQTT-3.1.2-14]")
            validate_topic_name(will.topic)
            _v5_only_properties(will.properties, version, "will")
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if self.password is not None:
            flags |= 0x40
        if self.username is not None:
            flags |= 0x80
        parts = [pack_string("MQTT"), bytes((version, flags)), pack_u16(self.keepalive)]
        if version == 5:
            parts.append(encode_properties(self.properties, PacketType.CONNECT))
        parts.append(pack_string(self.client_id, "client identifier"))
        if will is not None:
            if version == 5:
                parts.append(encode_properties(will.properties, WILL))
            parts.append(pack_string(will.topic, "will topic"))
            parts.append(pack_binary(will.payload, "will payload"))
        if self.username is not None:
            parts.append(pack_string(self.username, "user name"))
        if self.password is not None:
            parts.append(pack_binary(bytes(self.password), "password"))
        return frame(0x10, b"".join(parts))

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Connect:
        name, pos = read_string(body, 0, "protocol name")
        version, pos = read_byte(body, pos, "protocol level")
        if name != "MQTT" or version not in (4, 5):
            raise MalformedPacket(
                f"unsupported protocol {name!r} level {version} (expected 'MQTT' 4 or 5)"
                " [MQTT-3.1.2-1]"
            )
        cflags, pos = read_byte(body, pos, "connect flags")
        if cflags & 0x01:
            raise MalformedPacket("reserved connect flag bit 0 is set [MQTT-3.1.2-3]")
        will_flag = cflags & 0x04
        will_qos = (cflags >> 3) & 0x03
        will_retain = bool(cflags & 0x20)
        if will_qos == 3:
            raise MalformedPacket("will QoS 3 [MQTT-3.1.2-14]")
        if not will_flag and (will_qos or will_retain):
            raise MalformedPacket("will QoS or retain set without will flag [MQTT-3.1.2-11]")
        if version == 4 and cflags & 0x40 and not cflags & 0x80:
            raise MalformedPacket("password flag without user name flag [MQTT-3.1.2-22]")
        keepalive, pos = read_u16(body, pos, "keepalive")
        properties: dict[str, Any] = {}
        if version == 5:
            properties, pos = decode_properties(body, pos, PacketType.CONNECT)
        client_id, pos = read_string(body, pos, "client identifier")
        will = None
        if will_flag:
            will_props: dict[str, Any] = {}
            if version == 5:
                will_props, pos = decode_properties(body, pos, WILL)
            will_topic, pos = read_string(body, pos, "will topic")
            validate_topic_name(will_topic)
            will_payload, pos = read_binary(body, pos, "will payload")
            will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
        username = None
        password = None
        if cflags & 0x80:
            username, pos = read_string(body, pos, "user name")
        if cflags & 0x40:
            password, pos = read_binary(body, pos, "password")
        _no_trailing(body, pos, "CONNECT")
        return cls(client_id, bool(cflags & 0x02), keepalive, username, password, will,
                   properties, version)


class Connack(Packet):
    packet_type = PacketType.CONNACK
    __slots__ = ("session_present", "reason_code", "properties")
    _fields = __slots__

    def __init__(self, session_present: bool = False, reason_code: int = 0,
                 properties: dict[str, Any] | None = None) -> None:
        self.session_present = bool(session_present)
        self.reason_code = reason_code
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        _v5_only_properties(self.properties, protocol_version, "CONNACK")
        if not 0 <= self.reason_code <= 0xFF:
            raise MalformedPacket(f"CONNACK reason code {self.reason_code} out of range")
        body = bytes((1 if self.session_present else 0, self.reason_code))
        if protocol_version == 5:
            body += encode_properties(self.properties, PacketType.CONNACK)
        return frame(0x20, body)

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Connack:
        ack_flags, pos = read_byte(body, 0, "connect acknowledge flags")
        if ack_flags & 0xFE:
            raise MalformedPacket("reserved connect acknowledge flag bits are set [MQTT-3.2.2-1]")
        reason_code, pos = read_byte(body, pos, "CONNACK reason code")
        properties: dict[str, Any] = {}
        if protocol_version == 5:
            # A CONNACK that refuses MQTT 5 may come without properties.
            if pos < len(body):
                properties, pos = decode_properties(body, pos, PacketType.CONNACK)
        _no_trailing(body, pos, "CONNACK")
        return cls(bool(ack_flags), reason_code, properties)


class Publish(Packet):
    packet_type = PacketType.PUBLISH
    __slots__ = ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
    _fields = __slots__

    def __init__(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                 dup: bool = False, packet_id: int | None = None,
                 properties: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.payload = bytes(payload)
        self.qos = qos
        self.retain = bool(retain)
        self.dup = bool(dup)
        self.packet_id = packet_id
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        return encode_publish(self.topic, self.payload, self.qos, self.packet_id, self.retain,
                              self.dup, self.properties, protocol_version)

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Publish:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
        dup = bool(flags & 0x08)
        if dup and not qos:
            raise MalformedPacket("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
        topic, pos = read_string(body, 0, "topic name")
        packet_id = None
        if qos:
            packet_id, pos = _read_packet_id(body, pos, "PUBLISH")
        properties: dict[str, Any] = {}
        if protocol_version == 5:
            properties, pos = decode_properties(body, pos, PacketType.PUBLISH)
        validate_topic_name(topic, allow_empty="topic_alias" in properties)
        return cls(topic, body[pos:], qos, bool(flags & 0x01), dup, packet_id, properties)


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None,
                   retain: bool = False, dup: bool = False,
                   properties: dict[str, Any] | None = None, protocol_version: int = 4) -> bytes:
    """Encode a PUBLISH from its fields (the pure-Python fast path)."""
    if qos not in (0, 1, 2):
        raise MalformedPacket(f"PUBLISH with QoS {qos!r} [MQTT-3.3.1-4]")
    if dup and not qos:
        raise MalformedPacket("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
    validate_topic_name(topic, allow_empty=bool(properties) and "topic_alias" in properties)  # type: ignore[operator]
    parts = [pack_string(topic, "topic name")]
    if qos:
        parts.append(pack_u16(_check_packet_id(packet_id, "PUBLISH")))
    if protocol_version == 5:
        parts.append(encode_properties(properties, PacketType.PUBLISH))
    elif properties:
        _v5_only_properties(properties, protocol_version, "PUBLISH")
    parts.append(bytes(payload))
    return frame(0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0),
                 b"".join(parts))


class _Ack(Packet):
    """PUBACK, PUBREC, PUBREL and PUBCOMP share one layout (sections 3.4 to 3.7)."""

    packet_type = PacketType.PUBACK  # each subclass sets its own
    __slots__ = ("packet_id", "reason_code", "properties")
    _fields = __slots__
    _first_byte = 0

    def __init__(self, packet_id: int, reason_code: int = 0,
                 properties: dict[str, Any] | None = None) -> None:
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        name = type(self).__name__.upper()
        body = pack_u16(_check_packet_id(self.packet_id, name))
        if protocol_version < 5:
            if self.reason_code:
                raise MalformedPacket(f"{name} reason codes need MQTT 5")
            _v5_only_properties(self.properties, protocol_version, name)
        elif self.properties:
            body += bytes((self.reason_code,)) + encode_properties(self.properties, self.packet_type)
        elif self.reason_code:
            body += bytes((self.reason_code,))
        return frame(self._first_byte, body)

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> _Ack:
        name = cls.__name__.upper()
        packet_id, pos = _read_packet_id(body, 0, name)
        reason_code = 0
        properties: dict[str, Any] = {}
        if protocol_version == 5 and pos < len(body):
            reason_code, pos = read_byte(body, pos, f"{name} reason code")
            if pos < len(body):
                properties, pos = decode_properties(body, pos, cls.packet_type)
        _no_trailing(body, pos, name)
        return cls(packet_id, reason_code, properties)


class Puback(_Ack):
    packet_type = PacketType.PUBACK
    __slots__ = ()
    _first_byte = 0x40


class Pubrec(_Ack):
    packet_type = PacketType.PUBREC
    __slots__ = ()
    _first_byte = 0x50


class Pubrel(_Ack):
    packet_type = PacketType.PUBREL
    __slots__ = ()
    _first_byte = 0x62


class Pubcomp(_Ack):
    packet_type = PacketType.PUBCOMP
    __slots__ = ()
    _first_byte = 0x70


class Subscribe(Packet):
    packet_type = PacketType.SUBSCRIBE
    __slots__ = ("packet_id", "subscriptions", "properties")
    _fields = __slots__

    def __init__(self, packet_id: int, subscriptions: list[Subscription],
                 properties: dict[str, Any] | None = None) -> None:
        self.packet_id = packet_id
        self.subscriptions = list(subscriptions)
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        if not self.subscriptions:
            raise MalformedPacket("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
        _v5_only_properties(self.properties, protocol_version, "SUBSCRIBE")
        parts = [pack_u16(_check_packet_id(self.packet_id, "SUBSCRIBE"))]
        if protocol_version == 5:
            parts.append(encode_properties(self.properties, PacketType.SUBSCRIBE))
        for sub in self.subscriptions:
            validate_topic_filter(sub.topic_filter)
            if sub.qos not in (0, 1, 2):
                raise MalformedPacket(f"subscription QoS {sub.qos!r} [MQTT-3.8.3-4]")
            options = sub.qos
            extra = (0x04 if sub.no_local else 0) | (0x08 if sub.retain_as_published else 0)
            if sub.retain_handling not in (0, 1, 2):
                raise MalformedPacket(f"retain handling {sub.retain_handling!r} [MQTT-3.8.3-5]")
            extra |= sub.retain_handling << 4
            if extra and protocol_version < 5:
                raise MalformedPacket("subscription options other than QoS need MQTT 5")
            parts.append(pack_string(sub.topic_filter, "topic filter"))
            parts.append(bytes((options | extra,)))
        return frame(0x82, b"".join(parts))

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Subscribe:
        packet_id, pos = _read_packet_id(body, 0, "SUBSCRIBE")
        properties: dict[str, Any] = {}
        if protocol_version == 5:
            properties, pos = decode_properties(body, pos, PacketType.SUBSCRIBE)
        reserved = 0xC0 if protocol_version == 5 else 0xFC
        subscriptions = []
        while pos < len(body):
            topic_filter, pos = read_string(body, pos, "topic filter")
            validate_topic_filter(topic_filter)
            options, pos = read_byte(body, pos, "subscription options")
            if options & reserved:
                raise MalformedPacket("reserved subscription option bits are set [MQTT-3.8.3-5]")
            qos = options & 0x03
            if qos == 3:
                raise MalformedPacket("subscription QoS 3 [MQTT-3-8.3-4]")
            retain_handling = (options >> 4) & 0x03
            if retain_handling == 3:
                raise MalformedPacket("retain handling 3 [MQTT-3.8.3-5]")
            subscriptions.append(Subscription(topic_filter, qos, bool(options & 0x04),
                                              bool(options & 0x08), retain_handling))
        if not subscriptions:
            raise MalformedPacket("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
        return cls(packet_id, subscriptions, properties)


class Suback(Packet):
    packet_type = PacketType.SUBACK
    __slots__ = ("packet_id", "reason_codes", "properties")
    _fields = __slots__

    def __init__(self, packet_id: int, reason_codes: list[int],
                 properties: dict[str, Any] | None = None) -> None:
        self.packet_id = packet_id
        self.reason_codes = list(reason_codes)
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        _v5_only_properties(self.properties, protocol_version, type(self).__name__.upper())
        parts = [pack_u16(_check_packet_id(self.packet_id, type(self).__name__.upper()))]
        if protocol_version == 5:
            parts.append(encode_properties(self.properties, self.packet_type))
        parts.append(bytes(self.reason_codes))
        return frame(self.packet_type << 4, b"".join(parts))

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Suback:
        name = cls.__name__.upper()
        packet_id, pos = _read_packet_id(body, 0, name)
        properties: dict[str, Any] = {}
        if protocol_version == 5:
            properties, pos = decode_properties(body, pos, cls.packet_type)
        codes = list(body[pos:])
        if protocol_version < 5 and cls is Suback:
            for code in codes:
                if code not in (0, 1, 2, 0x80):
                    raise MalformedPacket(f"SUBACK return code 0x{code:02X} [MQTT-3.9.3-2]")
        if protocol_version < 5 and cls is Unsuback and codes:
            raise MalformedPacket("trailing bytes after the UNSUBACK packet")
        return cls(packet_id, codes, properties)


class Unsubscribe(Packet):
    packet_type = PacketType.UNSUBSCRIBE
    __slots__ = ("packet_id", "topic_filters", "properties")
    _fields = __slots__

    def __init__(self, packet_id: int, topic_filters: list[str],
                 properties: dict[str, Any] | None = None) -> None:
        self.packet_id = packet_id
        self.topic_filters = list(topic_filters)
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        if not self.topic_filters:
            raise MalformedPacket("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
        _v5_only_properties(self.properties, protocol_version, "UNSUBSCRIBE")
        parts = [pack_u16(_check_packet_id(self.packet_id, "UNSUBSCRIBE"))]
        if protocol_version == 5:
            parts.append(encode_properties(self.properties, PacketType.UNSUBSCRIBE))
        for topic_filter in self.topic_filters:
            validate_topic_filter(topic_filter)
            parts.append(pack_string(topic_filter, "topic filter"))
        return frame(0xA2, b"".join(parts))

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Unsubscribe:
        packet_id, pos = _read_packet_id(body, 0, "UNSUBSCRIBE")
        properties: dict[str, Any] = {}
        if protocol_version == 5:
            properties, pos = decode_properties(body, pos, PacketType.UNSUBSCRIBE)
        topic_filters = []
        while pos < len(body):
            topic_filter, pos = read_string(body, pos, "topic filter")
            validate_topic_filter(topic_filter)
            topic_filters.append(topic_filter)
        if not topic_filters:
            raise MalformedPacket("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
        return cls(packet_id, topic_filters, properties)


class Unsuback(Suback):
    """UNSUBACK; in MQTT 3.1.1 it carries no reason codes."""

    packet_type = PacketType.UNSUBACK
    __slots__ = ()

    def __init__(self, packet_id: int, reason_codes: list[int] | None = None,
                 properties: dict[str, Any] | None = None) -> None:
        Suback.__init__(self, packet_id, [] if reason_codes is None else reason_codes, properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        if protocol_version < 5 and self.reason_codes:
            raise MalformedPacket("UNSUBACK reason codes need MQTT 5")
        return Suback.encode(self, protocol_version)


class _Empty(Packet):
    __slots__ = ()
    _encoded = b""

    def encode(self, protocol_version: int = 4) -> bytes:
        return self._encoded

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> _Empty:
        _no_trailing(body, 0, cls.__name__.upper())
        return cls()


class Pingreq(_Empty):
    packet_type = PacketType.PINGREQ
    __slots__ = ()
    _encoded = b"\xc0\x00"


class Pingresp(_Empty):
    packet_type = PacketType.PINGRESP
    __slots__ = ()
    _encoded = b"\xd0\x00"


class Disconnect(Packet):
    packet_type = PacketType.DISCONNECT
    __slots__ = ("reason_code", "properties")
    _fields = __slots__

    def __init__(self, reason_code: int = 0, properties: dict[str, Any] | None = None) -> None:
        self.reason_code = reason_code
        self.properties = _props(properties)

    def encode(self, protocol_version: int = 4) -> bytes:
        name = type(self).__name__.upper()
        if protocol_version < 5:
            if self.reason_code or self.properties:
                raise MalformedPacket(f"{name} reason codes and properties need MQTT 5")
            return frame(self.packet_type << 4, b"")
        if not self.reason_code and not self.properties:
            return frame(self.packet_type << 4, b"")
        body = bytes((self.reason_code,))
        if self.properties:
            body += encode_properties(self.properties, self.packet_type)
        return frame(self.packet_type << 4, body)

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Disconnect:
        packet: Disconnect = _decode_reason_and_properties(cls, body, protocol_version)
        return packet


class Auth(Disconnect):
    """AUTH (MQTT 5 only); same layout as DISCONNECT."""

    packet_type = PacketType.AUTH
    __slots__ = ()

    def encode(self, protocol_version: int = 4) -> bytes:
        if protocol_version < 5:
            raise MalformedPacket("AUTH needs MQTT 5")
        return Disconnect.encode(self, protocol_version)

    @classmethod
    def decode(cls, flags: int, body: bytes, protocol_version: int) -> Disconnect:
        if protocol_version < 5:
            raise MalformedPacket("packet type 15 (AUTH) is reserved in MQTT 3.1.1 [MQTT-2.2.1]")
        packet: Disconnect = _decode_reason_and_properties(cls, body, protocol_version)
        return packet


def _decode_reason_and_properties(cls: Any, body: bytes, protocol_version: int) -> Any:
    """DISCONNECT and AUTH: an optional reason code, then optional properties."""
    name = cls.__name__.upper()
    if protocol_version < 5:
        _no_trailing(body, 0, name)
        return cls()
    reason_code = 0
    properties: dict[str, Any] = {}
    pos = 0
    if body:
        reason_code, pos = read_byte(body, 0, f"{name} reason code")
        if pos < len(body):
            properties, pos = decode_properties(body, pos, cls.packet_type)
    _no_trailing(body, pos, name)
    return cls(reason_code, properties)


# Index = packet type; the fixed-header flags each type must carry (None: any, PUBLISH).
_CLASSES: tuple[Any, ...] = (None, Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp,
                             Subscribe, Suback, Unsubscribe, Unsuback, Pingreq, Pingresp,
                             Disconnect, Auth)
_REQUIRED_FLAGS: tuple[int, ...] = (0, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)


def decode_body(first_byte: int, body: bytes, protocol_version: int) -> Packet:
    """Decode one packet from its first byte and its body (the bytes after the length)."""
    packet_type = first_byte >> 4
    flags = first_byte & 0x0F
    if packet_type == 0:
        raise MalformedPacket("packet type 0 is reserved [MQTT-2.1.2]")
    required = _REQUIRED_FLAGS[packet_type]
    if required >= 0 and flags != required:
        raise MalformedPacket(
            f"{PacketType(packet_type).name} fixed header flags are 0x{flags:X}, must be"
            f" 0x{required:X} [MQTT-2.2.2-2]"
        )
    packet: Packet = _CLASSES[packet_type].decode(flags, body, protocol_version)
    return packet
