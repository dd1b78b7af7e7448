"""Variable Byte Integers (section 1.5.5)."""

from __future__ import annotations

from types import ModuleType

import pytest

from mqttquic.errors import MalformedPacket

# Boundaries from the table in section 1.5.5.
TABLE = [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), TABLE)
def test_spec_table(codec: ModuleType, value: int, encoded: bytes) -> None:
    assert codec.encode_varint(value) == encoded
    assert codec.decode_varint(encoded) == (value, len(encoded))
    assert codec.decode_varint(b"junk" + encoded + b"tail", 4) == (value, 4 + len(encoded))
    assert codec.decode_varint(bytearray(encoded)) == (value, len(encoded))
    assert codec.decode_varint(memoryview(encoded)) == (value, len(encoded))


@pytest.mark.parametrize("value", [-1, 268_435_456, 2**31, 2**40, 2**63, 2**64, -2**63 - 1])
def test_encode_out_of_range(codec: ModuleType, value: int) -> None:
    with pytest.raises(MalformedPacket, match="out of range"):
        codec.encode_varint(value)


@pytest.mark.parametrize("encoded", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff"])
def test_truncated_is_need_more_data(codec: ModuleType, encoded: bytes) -> None:
    assert codec.decode_varint(encoded) is None


def test_more_than_four_bytes(codec: ModuleType) -> None:
    with pytest.raises(MalformedPacket, match=r"longer than 4 bytes \[MQTT-1.5.5-1\]"):
        codec.decode_varint(b"\xff\xff\xff\xff\x01")


@pytest.mark.parametrize("encoded", [b"\x80\x00", b"\xff\x80\x00", b"\x80\x80\x80\x00"])
def test_non_minimal(codec: ModuleType, encoded: bytes) -> None:
    with pytest.raises(MalformedPacket, match=r"minimum number of bytes \[MQTT-1.5.5-1\]"):
        codec.decode_varint(encoded)


def test_every_value_round_trips_at_the_seams(codec: ModuleType) -> None:
    for base in (0, 128, 16_384, 2_097_152):
        for value in range(max(0, base - 300), base + 300):
            encoded = codec.encode_varint(value)
            assert codec.decode_varint(encoded) == (value, len(encoded))
