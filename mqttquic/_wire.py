"""Primitive wire types of MQTT (section 1.5), in pure Python.

Shared by both codec twins for the packets that are not on a hot path. Every
``read_*`` takes the packet body and an offset and returns ``(value, offset)``;
running past the end of the body is a MalformedPacket, because the body's
length is already known when these are called.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import MalformedPacket

__all__ = [
    "MAX_VARINT",
    "payload_bytes",
    "encode_varint",
    "decode_varint",
    "read_varint",
    "read_byte",
    "read_u16",
    "read_u32",
    "read_string",
    "read_binary",
    "pack_u16",
    "pack_string",
    "pack_binary",
]

MAX_VARINT = 268_435_455


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as a Variable Byte Integer (1 to 4 bytes)."""
    if not 0 <= value <= MAX_VARINT:
        raise MalformedPacket(
            f"variable byte integer {value} out of range 0..{MAX_VARINT} [MQTT-1.5.5]"
        )
    out = bytearray()
    while True:
        digit = value & 0x7F
        value >>= 7
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """Decode a Variable Byte Integer at ``offset``.

    Returns ``(value, next_offset)``, or ``None`` when ``buf`` ends before the
    integer does (need more data). More than four bytes, or a non-minimal
    encoding, raise MalformedPacket [MQTT-1.5.5-1].
    """
    value = 0
    shift = 0
    end = len(buf)
    if not 0 <= offset <= end:
        raise IndexError("offset out of range")
    pos = offset
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise MalformedPacket(
                    "variable byte integer not encoded in the minimum number of bytes"
                    " [MQTT-1.5.5-1]"
                )
            return value, pos
        shift += 7
        if shift == 28:
            raise MalformedPacket("variable byte integer longer than 4 bytes [MQTT-1.5.5-1]")
    return None


def read_varint(data: bytes, pos: int, what: str = "variable byte integer") -> tuple[int, int]:
    result = decode_varint(data, pos)
    if result is None:
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return result


def read_byte(data: bytes, pos: int, what: str) -> tuple[int, int]:
    if pos >= len(data):
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return data[pos], pos + 1


def read_u16(data: bytes, pos: int, what: str) -> tuple[int, int]:
    end = pos + 2
    if end > len(data):
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return (data[pos] << 8) | data[pos + 1], end


def read_u32(data: bytes, pos: int, what: str) -> tuple[int, int]:
    end = pos + 4
    if end > len(data):
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return int.from_bytes(data[pos:end], "big"), end


def read_binary(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    length, pos = read_u16(data, pos, f"length of {what}")
    end = pos + length
    if end > len(data):
        raise MalformedPacket(f"{what} runs past the end of the packet")
    return bytes(data[pos:end]), end


def read_string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    raw, pos = read_binary(data, pos, what)
    return decode_utf8(raw, what), pos


def decode_utf8(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not valid UTF-8 ({exc.reason}) [MQTT-1.5.4-1]") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.4-2]")
    return text


def pack_u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def pack_binary(value: bytes, what: str = "binary data") -> bytes:
    if len(value) > 0xFFFF:
        raise MalformedPacket(f"{what} is {len(value)} bytes, more than 65535 [MQTT-1.5.6]")
    return len(value).to_bytes(2, "big") + value


def pack_string(value: str, what: str = "string") -> bytes:
    if "\x00" in value:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.4-2]")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPacket(f"{what} is not valid UTF-8 (lone surrogate) [MQTT-1.5.4-1]") from None
    if len(raw) > 0xFFFF:
        raise MalformedPacket(f"{what} is {len(raw)} bytes, more than 65535 [MQTT-1.5.4]")
    return len(raw).to_bytes(2, "big") + raw


def payload_bytes(payload: Any) -> bytes:
    """bytes as they are; str as UTF-8; dict, list, numbers, bools as JSON; None as empty."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if payload is None:
        return b""
    if isinstance(payload, (dict, list, tuple, int, float, bool)):
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
    raise TypeError(f"payload must be bytes, str or JSON-serialisable, not {type(payload).__name__}")
