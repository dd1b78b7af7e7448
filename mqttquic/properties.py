"""MQTT 5 properties (section 2.2.2): wire types, where each is allowed, codec.

Properties are held in a plain dict keyed by the snake_case name of the
property (``message_expiry_interval``, ``user_property``, ...). Properties that
may appear more than once (``user_property``, ``subscription_identifier``) are
lists; ``user_property`` is a list of ``(name, value)`` tuples in wire order.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._wire import (
    encode_varint,
    pack_binary,
    pack_string,
    read_binary,
    read_byte,
    read_string,
    read_u16,
    read_u32,
    read_varint,
)
from .enums import PacketType
from .errors import MalformedPacket

__all__ = ["PropertySpec", "PROPERTIES", "PROPERTY_IDS", "WILL", "encode_properties",
           "decode_properties", "context_name"]

# The Will Properties of a CONNECT are their own context (section 3.1.3.2).
WILL = 0

_P = PacketType
_ALL = frozenset([_P.CONNECT, _P.CONNACK, _P.PUBLISH, _P.PUBACK, _P.PUBREC, _P.PUBREL,
                  _P.PUBCOMP, _P.SUBSCRIBE, _P.SUBACK, _P.UNSUBSCRIBE, _P.UNSUBACK,
                  _P.DISCONNECT, _P.AUTH, WILL])
_ACKS = frozenset([_P.CONNACK, _P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP, _P.SUBACK,
                   _P.UNSUBACK, _P.DISCONNECT, _P.AUTH])


class PropertySpec(NamedTuple):
    identifier: int
    name: str
    wire_type: str  # byte, u16, u32, varint, string, binary, string_pair
    allowed_in: frozenset[int]
    multiple: bool = False
    # Values the spec forbids (0 for receive_maximum, ...) make a Protocol Error.
    minimum: int = 0
    maximum: int | None = None


PROPERTIES: dict[int, PropertySpec] = {
    spec.identifier: spec
    for spec in [
        PropertySpec(0x01, "payload_format_indicator", "byte", frozenset([_P.PUBLISH, WILL]), maximum=1),
        PropertySpec(0x02, "message_expiry_interval", "u32", frozenset([_P.PUBLISH, WILL])),
        PropertySpec(0x03, "content_type", "string", frozenset([_P.PUBLISH, WILL])),
        PropertySpec(0x08, "response_topic", "string", frozenset([_P.PUBLISH, WILL])),
        PropertySpec(0x09, "correlation_data", "binary", frozenset([_P.PUBLISH, WILL])),
        PropertySpec(0x0B, "subscription_identifier", "varint",
                     frozenset([_P.PUBLISH, _P.SUBSCRIBE]), multiple=True, minimum=1),
        PropertySpec(0x11, "session_expiry_interval", "u32",
                     frozenset([_P.CONNECT, _P.CONNACK, _P.DISCONNECT])),
        PropertySpec(0x12, "assigned_client_identifier", "string", frozenset([_P.CONNACK])),
        PropertySpec(0x13, "server_keep_alive", "u16", frozenset([_P.CONNACK])),
        PropertySpec(0x15, "authentication_method", "string",
                     frozenset([_P.CONNECT, _P.CONNACK, _P.AUTH])),
        PropertySpec(0x16, "authentication_data", "binary",
                     frozenset([_P.CONNECT, _P.CONNACK, _P.AUTH])),
        PropertySpec(0x17, "request_problem_information", "byte", frozenset([_P.CONNECT]), maximum=1),
        PropertySpec(0x18, "will_delay_interval", "u32", frozenset([WILL])),
        PropertySpec(0x19, "request_response_information", "byte", frozenset([_P.CONNECT]), maximum=1),
        PropertySpec(0x1A, "response_information", "string", frozenset([_P.CONNACK])),
        PropertySpec(0x1C, "server_reference", "string", frozenset([_P.CONNACK, _P.DISCONNECT])),
        PropertySpec(0x1F, "reason_string", "string", _ACKS),
        PropertySpec(0x21, "receive_maximum", "u16", frozenset([_P.CONNECT, _P.CONNACK]), minimum=1),
        PropertySpec(0x22, "topic_alias_maximum", "u16", frozenset([_P.CONNECT, _P.CONNACK])),
        PropertySpec(0x23, "topic_alias", "u16", frozenset([_P.PUBLISH]), minimum=1),
        PropertySpec(0x24, "maximum_qos", "byte", frozenset([_P.CONNACK]), maximum=1),
        PropertySpec(0x25, "retain_available", "byte", frozenset([_P.CONNACK]), maximum=1),
        PropertySpec(0x26, "user_property", "string_pair", _ALL, multiple=True),
        PropertySpec(0x27, "maximum_packet_size", "u32", frozenset([_P.CONNECT, _P.CONNACK]), minimum=1),
        PropertySpec(0x28, "wildcard_subscription_available", "byte", frozenset([_P.CONNACK]), maximum=1),
        PropertySpec(0x29, "subscription_identifier_available", "byte", frozenset([_P.CONNACK]), maximum=1),
        PropertySpec(0x2A, "shared_subscription_available", "byte", frozenset([_P.CONNACK]), maximum=1),
    ]
}

PROPERTY_IDS: dict[str, PropertySpec] = {spec.name: spec for spec in PROPERTIES.values()}

_UINT_LIMITS = {"byte": 0xFF, "u16": 0xFFFF, "u32": 0xFFFFFFFF, "varint": 268_435_455}


def context_name(context: int) -> str:
    return "Will Properties" if context == WILL else PacketType(context).name


def _check_range(spec: PropertySpec, value: int, context: int) -> None:
    upper = spec.maximum if spec.maximum is not None else _UINT_LIMITS[spec.wire_type]
    if not spec.minimum <= value <= upper:
        raise MalformedPacket(
            f"property {spec.name} = {value} on {context_name(context)} is outside"
            f" {spec.minimum}..{upper} [MQTT-2.2.2]"
        )


def decode_properties(data: bytes, pos: int, context: int) -> tuple[dict[str, Any], int]:
    """Decode the property length and properties starting at ``pos``."""
    length, pos = read_varint(data, pos, "property length")
    end = pos + length
    if end > len(data):
        raise MalformedPacket(
            f"property length {length} runs past the end of the {context_name(context)} packet"
        )
    props: dict[str, Any] = {}
    if not length:
        return props, end
    block = data[:end]
    while pos < end:
        identifier, pos = read_varint(block, pos, "property identifier")
        spec = PROPERTIES.get(identifier)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{identifier:02X} [MQTT-2.2.2]")
        if context not in spec.allowed_in:
            raise MalformedPacket(
                f"property {spec.name} is not allowed on {context_name(context)} [MQTT-2.2.2-2]"
            )
        value: Any
        wire = spec.wire_type
        if wire == "byte":
            value, pos = read_byte(block, pos, spec.name)
        elif wire == "u16":
            value, pos = read_u16(block, pos, spec.name)
        elif wire == "u32":
            value, pos = read_u32(block, pos, spec.name)
        elif wire == "varint":
            value, pos = read_varint(block, pos, spec.name)
        elif wire == "string":
            value, pos = read_string(block, pos, spec.name)
        elif wire == "binary":
            value, pos = read_binary(block, pos, spec.name)
        else:
            key, pos = read_string(block, pos, "user property name")
            val, pos = read_string(block, pos, "user property value")
            value = (key, val)
        if wire in _UINT_LIMITS:
            _check_range(spec, value, context)
        if spec.multiple and not (identifier == 0x0B and context == _P.SUBSCRIBE):
            props.setdefault(spec.name, []).append(value)
        elif spec.name in props:
            raise MalformedPacket(
                f"property {spec.name} appears more than once on {context_name(context)}"
                " [MQTT-2.2.2]"
            )
        else:
            props[spec.name] = value
    return props, end


def _encode_value(spec: PropertySpec, value: Any, context: int) -> bytes:
    wire = spec.wire_type
    if wire in _UINT_LIMITS:
        if not isinstance(value, int):
            raise MalformedPacket(f"property {spec.name} must be an integer, not {value!r}")
        _check_range(spec, int(value), context)
        if wire == "varint":
            return encode_varint(value)
        return int(value).to_bytes({"byte": 1, "u16": 2, "u32": 4}[wire], "big")
    if wire == "string":
        return pack_string(value, spec.name)
    if wire == "binary":
        return pack_binary(bytes(value), spec.name)
    key, val = value
    return pack_string(key, "user property name") + pack_string(val, "user property value")


def _as_list(spec: PropertySpec, value: Any, context: int) -> list[Any]:
    """The values to write for one property: several only where the spec allows it."""
    if spec.wire_type == "string_pair":
        if isinstance(value, dict):
            return list(value.items())
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return [value]
        return list(value)
    if spec.multiple and context != _P.SUBSCRIBE and isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return list(value)
    return [value]


def encode_properties(props: dict[str, Any] | None, context: int) -> bytes:
    """Encode ``props`` with its leading property length."""
    if not props:
        return b"\x00"
    out = bytearray()
    for name, value in props.items():
        spec = PROPERTY_IDS.get(name)
        if spec is None:
            raise MalformedPacket(f"unknown MQTT 5 property {name!r}")
        if context not in spec.allowed_in:
            raise MalformedPacket(
                f"property {spec.name} is not allowed on {context_name(context)} [MQTT-2.2.2-2]"
            )
        values = _as_list(spec, value, context)
        for item in values:
            out += encode_varint(spec.identifier)
            out += _encode_value(spec, item, context)
    return encode_varint(len(out)) + bytes(out)

