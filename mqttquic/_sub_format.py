"""``mqttquic sub -F``: mosquitto_sub's output format strings.

``%`` fields take mosquitto's modifiers: ``-`` (align left), ``0`` (pad with zeros),
a width and a ``.precision``. ``@`` passes one letter to strftime (``@N``: nanoseconds),
and backslash escapes (``\\n``, ``\\t``, ...) print control characters. Bytes in,
bytes out: a payload is printed as it arrived, never decoded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .message import Message

__all__ = ["format_message"]

_ESCAPES = {"\\": b"\\", "0": b"\0", "a": b"\a", "e": b"\x1b", "n": b"\n", "r": b"\r",
            "t": b"\t", "v": b"\v"}


class _Field:
    __slots__ = ("left", "zeros", "width", "precision")

    def __init__(self, left: bool, zeros: bool, width: int, precision: int | None) -> None:
        self.left, self.zeros, self.width, self.precision = left, zeros, width, precision

    def text(self, value: bytes) -> bytes:
        if self.precision is not None:
            value = value[:self.precision]
        return value.ljust(self.width) if self.left else value.rjust(self.width)

    def number(self, value: int | None) -> bytes:
        if value is None:
            return (b"0" if self.zeros else b" ") * self.width
        digits = str(value).encode()
        if self.left:
            return digits.ljust(self.width)
        return digits.rjust(self.width, b"0" if self.zeros else b" ")


def format_message(template: str, message: Message, now: float | None = None) -> bytes:
    """``message`` printed by ``template`` (no end of line: the caller adds it)."""
    now = time.time() if now is None else now
    out = bytearray()
    i, end = 0, len(template)
    while i < end:
        char = template[i]
        if char == "%" and i + 1 < end:
            i += 1
            left = template[i] == "-"
            if left and i + 1 < end:
                i += 1
            zeros = template[i] == "0"
            if zeros and i + 1 < end:
                i += 1
            start = i
            while i + 1 < end and template[i].isdigit():
                i += 1
            width = int(template[start:i] or 0)
            precision = None
            if template[i] == "." and i + 1 < end:
                i += 1
                start = i
                while i + 1 < end and template[i].isdigit():
                    i += 1
                precision = int(template[start:i] or 0)
            out += _percent(template[i], _Field(left, zeros, width, precision), message, now)
        elif char == "@" and i + 1 < end:
            i += 1
            letter = template[i]
            if letter == "@":
                out += b"@"
            elif letter == "N":
                out += b"%09d" % int((now % 1) * 1e9)
            else:
                out += time.strftime("%" + letter, time.localtime(now)).encode()
        elif char == "\\" and i + 1 < end:
            i += 1
            out += _ESCAPES.get(template[i], b"")
        else:
            out += char.encode()
        i += 1
    return bytes(out)


def _percent(letter: str, field: _Field, message: Message, now: float) -> bytes:
    props = message.properties
    if letter == "%":
        return b"%"
    if letter == "t":
        return field.text(message.topic.encode())
    if letter == "p":
        return field.text(message.payload)
    if letter == "x":
        return field.text(message.payload.hex().encode())
    if letter == "X":
        return field.text(message.payload.hex().upper().encode())
    if letter == "l":
        return field.number(len(message.payload))
    if letter == "q":
        return str(message.qos).encode()
    if letter == "r":
        return b"1" if message.retain else b"0"
    if letter == "I":
        return field.text(time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)).encode())
    if letter == "U":
        return b"%d.%09d" % (int(now), int((now % 1) * 1e9))
    if letter in "jJ":
        return _json(message, now, escaped=letter == "j")
    if letter == "A":
        return field.number(props.get("topic_alias"))
    if letter == "C":
        return field.text(str(props.get("content_type", "")).encode())
    if letter == "D":
        return bytes(props.get("correlation_data", b""))
    if letter == "E":
        return field.number(props.get("message_expiry_interval"))
    if letter == "F":
        return field.number(props.get("payload_format_indicator"))
    if letter == "R":
        return field.text(str(props.get("response_topic", "")).encode())
    if letter == "S":
        ids = props.get("subscription_identifier")
        if isinstance(ids, list):
            ids = ids[0] if ids else None
        return field.number(ids)
    if letter == "P":
        pairs = props.get("user_property", [])
        return b" ".join(f"{name}:{value}".encode() for name, value in pairs)
    return b""


def _json(message: Message, now: float, escaped: bool) -> bytes:
    # mosquitto_sub's own stamp: local time, microseconds, then "Z" and the UTC offset
    # ("2026-12-07T02:36:15.480123Z+0000"), odd as that is: scripts parse it.
    local = time.localtime(now)
    stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int((now % 1) * 1e6):06d}Z"
             + time.strftime("%z", local))
    record: dict[str, Any] = {"tst": stamp, "topic": message.topic, "qos": message.qos,
                              "retain": int(message.retain), "payloadlen": len(message.payload)}
    if escaped:
        record["payload"] = message.payload.decode("utf-8", "surrogateescape")
    else:  # %J: the payload is JSON itself, embedded as it is
        record["payload"] = json.loads(message.payload) if message.payload else None
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                      ).encode("utf-8", "surrogateescape")
