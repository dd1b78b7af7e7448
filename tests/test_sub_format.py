"""``mqttquic sub -F`` format strings, as mosquitto_sub's (no sockets)."""

from __future__ import annotations

import json
import re
import time

import pytest

from mqttquic._sub_format import format_message
from mqttquic.message import Message

NOW = 1_700_000_000.123456789
MESSAGE = Message("a/b", b"\x00hi\xff", qos=1, retain=True, properties={
    "content_type": "text/x", "response_topic": "r/t", "correlation_data": b"cd",
    "message_expiry_interval": 30, "payload_format_indicator": 0, "topic_alias": 3,
    "subscription_identifier": [7], "user_property": [("k", "v"), ("k2", "v2")]})


@pytest.mark.parametrize(("template", "expected"), [
    ("%t %q %r %l", b"a/b 1 1 4"),
    ("%p", b"\x00hi\xff"),
    ("%x|%X", b"006869ff|006869FF"),
    ("[%6t][%-6t][%.1t][%5.2t]", b"[   a/b][a/b   ][a][   a/]"),
    ("[%05l][%-5l][%5l]", b"[00004][4    ][    4]"),
    ("%C %R %D %E %F %A %S", b"text/x r/t cd 30 0 3 7"),
    ("%P", b"k:v k2:v2"),
    ("100%% @@ \\t\\\\\\n", b"100% @ \t\\\n"),
    ("%U", b"1700000000.123456"),
    ("@Y", time.strftime("%Y", time.localtime(NOW)).encode()),
    ("%z", b""),
])
def test_fields(template: str, expected: bytes) -> None:
    out = format_message(template, MESSAGE, NOW)
    if template == "%U":  # nanoseconds from a float: the first six digits are exact
        assert out.startswith(expected) and len(out) == len(expected) + 3
    else:
        assert out == expected


def test_missing_properties_print_blank_or_nothing() -> None:
    plain = Message("t", b"x")
    assert format_message("[%C][%3E][%03A][%P][%D]", plain, NOW) == b"[][   ][000][][]"


def test_json_fields() -> None:
    record = json.loads(format_message("%j", MESSAGE, NOW).decode("utf-8", "surrogateescape"))
    assert (record["topic"], record["qos"], record["retain"], record["payloadlen"]) == (
        "a/b", 1, 1, 4)
    # mosquitto_sub's stamp, to the character: microseconds, "Z", then the UTC offset.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}", record["tst"])
    embedded = json.loads(format_message("%J", Message("t", b'{"v": 2}'), NOW))
    assert embedded["payload"] == {"v": 2}
    with pytest.raises(ValueError):
        format_message("%J", Message("t", b"not json"), NOW)
