"""MQTT packet boundaries in a relayed byte stream, without decoding the packets.

The gateway relays bytes; it only needs to know where packets start and end, to
refuse one larger than its maximum before buffering it, and to take out the
PINGRESPs its own keepalive pings earn on data streams. Sans I/O: bytes in, bytes
out, a PacketTooLarge or MalformedPacket for a stream that must end.
"""

from __future__ import annotations

from .errors import MalformedPacket, PacketTooLarge

__all__ = ["Framer"]


class Framer:
    """Follows one direction of one stream, chunk by chunk.

    ``feed(data)`` returns ``data`` without the next ``owed`` packets of type ``drop``
    (or ``data`` itself when none is taken out) and raises PacketTooLarge as soon as a
    fixed header announces a packet above ``max_packet_size``. ``owed`` None: every
    packet of type ``drop`` is taken out."""

    __slots__ = ("max_packet_size", "drop", "owed", "_need", "_header", "_dropping", "dropped")

    def __init__(self, max_packet_size: int, drop: int | None = None,
                 owed: int | None = None) -> None:
        self.max_packet_size = max_packet_size
        self.drop = drop  # a packet type (PINGRESP = 13) to take out of the stream
        # How many more of them to take out (the answers to our own requests); the rest
        # pass. None: all of them.
        self.owed = owed
        self._need = 0  # body bytes of the current packet still to come
        self._header = bytearray()  # the fixed header read so far
        self._dropping = False  # the current packet is one to take out
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        out: bytearray | None = None  # what is kept, once something is taken out
        kept_from = 0  # where the current run of kept bytes began
        pos = 0
        end = len(data)
        if self._dropping:  # the last chunk ended inside a packet being taken out
            out = bytearray()
            pos = kept_from = min(self._need, end)
            self._need -= pos
            if self._need:
                return b""
            self._dropping = False
        header = self._header
        start = 0  # where the current packet began (0: in an earlier chunk)
        while pos < end:
            if self._need:
                step = min(self._need, end - pos)
                self._need -= step
                pos += step
                continue
            if not header:
                start = pos
            header.append(data[pos])
            pos += 1
            if len(header) < 2 or header[-1] & 0x80:
                if len(header) == 5:
                    raise MalformedPacket("remaining length longer than 4 bytes [MQTT-1.5.5-1]")
                continue
            length = 0
            for shift, byte in enumerate(header[1:]):
                length |= (byte & 0x7F) << (7 * shift)
            size = len(header) + length
            if size > self.max_packet_size:
                raise PacketTooLarge(f"packet of {size} bytes exceeds the maximum of"
                                     f" {self.max_packet_size}")
            dropping = (self.drop is not None and header[0] >> 4 == self.drop
                        and (self.owed is None or self.owed > 0))
            header.clear()
            if not dropping:
                self._need = length
                continue
            if self.owed is not None:
                self.owed -= 1
            # Take it out. (A header split across chunks has its first bytes sent already:
            # only a broken peer splits a two-byte PINGRESP.)
            self.dropped += 1
            if out is None:
                out = bytearray()
            out += data[kept_from:start]
            step = min(length, end - pos)
            pos += step
            kept_from = pos
            if step < length:
                self._need = length - step
                self._dropping = True
                return bytes(out)
        if out is None:
            return data
        out += data[kept_from:end]
        return bytes(out)
