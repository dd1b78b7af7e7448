"""The codecs we measure, each through its own fastest public or internal path.

Every peer offers the same operations, each a zero-argument callable made by a
``make_*`` function so that set-up is not timed:

- encode_qos0: topic + 32-byte payload -> bytes of a QoS 0 PUBLISH
- encode_qos1: topic + 1 KiB payload + packet id -> bytes of a QoS 1 PUBLISH
- decode_stream: 10,000 QoS 0 PUBLISHes fed in 1400-byte chunks -> (topic, payload) objects
- varint_encode / varint_decode: the remaining-length integer (where the peer exposes one)

A peer whose library is missing is left out of the table, not faked.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TOPIC = "device/abc123/telemetry/sensors"
PAYLOAD_32 = b"x" * 32
PAYLOAD_1K = bytes(range(256)) * 4
STREAM_PACKETS = 10_000
CHUNK = 1400
VARINTS = [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455]

Op = Callable[[], Any]


@dataclass
class Peer:
    name: str
    protocol_version: int  # the MQTT version its codec writes: ratios compare like with like
    ops: dict[str, Callable[[], Op]] = field(default_factory=dict)


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def stream_bytes(protocol_version: int) -> list[bytes]:
    from mqttquic import _codec_py

    one = _codec_py.encode_publish(TOPIC, PAYLOAD_32, protocol_version=protocol_version)
    return chunks_of(one * STREAM_PACKETS)


# --- mqttquic ------------------------------------------------------------------


def mqttquic_peer(module_name: str, label: str, protocol_version: int) -> Peer:
    codec = importlib.import_module(module_name)
    v = protocol_version

    def enc0() -> Op:
        encode_publish = codec.encode_publish
        return lambda: encode_publish(TOPIC, PAYLOAD_32, 0, None, False, False, None, v)

    def enc1() -> Op:
        encode_publish = codec.encode_publish
        return lambda: encode_publish(TOPIC, PAYLOAD_1K, 1, 4242, False, False, None, v)

    def decode() -> Op:
        chunks = stream_bytes(v)

        def run() -> int:
            decoder = codec.StreamDecoder(v)
            count = 0
            for chunk in chunks:
                count += len(decoder.feed(chunk))
            return count

        return run

    def venc() -> Op:
        encode_varint = codec.encode_varint
        return lambda: [encode_varint(n) for n in VARINTS]

    def vdec() -> Op:
        decode_varint = codec.decode_varint
        encoded = [codec.encode_varint(n) for n in VARINTS]
        return lambda: [decode_varint(b) for b in encoded]

    return Peer(f"{label} (v{'5' if v == 5 else '3.1.1'})", v,
                {"encode_qos0": enc0, "encode_qos1": enc1, "decode_stream": decode,
                 "varint_encode": venc, "varint_decode": vdec})


# --- paho-mqtt -------------------------------------------------------------------


def paho_peer() -> Peer:
    import paho.mqtt.client as paho

    class _Sink:
        """Stands in for paho's socket: collects writes, serves reads from chunks."""

        def __init__(self) -> None:
            self.data = bytearray()
            self.pos = 0

        def recv(self, n: int) -> bytes:
            out = bytes(self.data[self.pos:self.pos + n])
            self.pos += len(out)
            if not out:
                raise BlockingIOError
            return out

        def close(self) -> None:
            pass

    def client() -> Any:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench")
        c._sock = _Sink()
        # paho's own encoder; the packet stops at its send queue, as a socket write would.
        c._packet_queue = lambda command, packet, mid, qos, info=None: packet
        return c

    def enc0() -> Op:
        c = client()
        topic = TOPIC.encode()  # paho's publish() does this encode too
        return lambda: c._send_publish(0, topic, PAYLOAD_32, 0, False)

    def enc1() -> Op:
        c = client()
        topic = TOPIC.encode()
        return lambda: c._send_publish(4242, topic, PAYLOAD_1K, 1, False)

    def decode() -> Op:
        chunks = stream_bytes(4)
        c = client()
        sink: _Sink = c._sock
        c._sock_recv = sink.recv
        got: list[Any] = []
        c.on_message = lambda client, userdata, message: got.append(message)
        c._state = paho._ConnectionState.MQTT_CS_CONNECTED

        def run() -> int:
            got.clear()
            for chunk in chunks:
                sink.data += chunk
                # paho reads packet by packet until the socket has no more bytes
                while True:
                    try:
                        rc = c._packet_read()
                    except BlockingIOError:
                        break
                    if rc:
                        break
                del sink.data[:sink.pos]
                sink.pos = 0
            return len(got)

        return run

    def venc() -> Op:
        c = client()

        def run() -> list[bytearray]:
            out = []
            for n in VARINTS:
                buf = bytearray()
                c._pack_remaining_length(buf, n)
                out.append(buf)
            return out

        return run

    return Peer("paho-mqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1,
                                 "decode_stream": decode, "varint_encode": venc})


# --- gmqtt -----------------------------------------------------------------------


def gmqtt_peer() -> Peer:
    import gmqtt
    from gmqtt.mqtt import utils as gutils
    from gmqtt.mqtt.package import PublishPacket
    from gmqtt.mqtt.protocol import MQTTProtocol

    class _Protocol:
        proto_ver = 4
        id_generator = gutils.IdGenerator(max=65535)

    def enc0() -> Op:
        proto = _Protocol()
        return lambda: PublishPacket.build_package(gmqtt.Message(TOPIC, PAYLOAD_32, qos=0), proto)

    def enc1() -> Op:
        proto = _Protocol()
        free = proto.id_generator.free_id

        def run() -> Any:
            # gmqtt takes the packet id from its allocator; give it back as an ack would.
            mid, packet = PublishPacket.build_package(gmqtt.Message(TOPIC, PAYLOAD_1K, qos=1), proto)
            free(mid)
            return packet

        return run

    def decode() -> Op:
        chunks = stream_bytes(4)
        client = gmqtt.Client("bench")
        client._connection_state.protocol_version = 4
        got: list[Any] = []
        client.on_message = lambda c, topic, payload, qos, properties: got.append((topic, payload))
        handle = client._package_handler._handle_publish_packet

        class _Connection:
            @staticmethod
            def put_package(pkg: Any) -> None:
                handle(pkg.cmd, pkg.data)

        protocol = MQTTProtocol.__new__(MQTTProtocol)
        protocol._connection = _Connection()

        def run() -> int:
            got.clear()
            buf = b""
            for chunk in chunks:  # gmqtt's _read_loop, minus the await
                buf += chunk
                parsed = protocol._read_packet(buf)
                buf = buf[parsed:]
            return len(got)

        return run

    def venc() -> Op:
        pack = gutils.pack_variable_byte_integer
        return lambda: [pack(n) for n in VARINTS]

    def vdec() -> Op:
        unpack = gutils.unpack_variable_byte_integer
        encoded = [bytes(gutils.pack_variable_byte_integer(n)) for n in VARINTS]
        return lambda: [unpack(b) for b in encoded]

    return Peer("gmqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1, "decode_stream": decode,
                             "varint_encode": venc, "varint_decode": vdec})


# --- amqtt -----------------------------------------------------------------------


def amqtt_peer() -> Peer:
    from amqtt.mqtt.packet import MQTTFixedHeader
    from amqtt.mqtt.publish import PublishPacket

    def enc0() -> Op:
        return lambda: PublishPacket.build(TOPIC, PAYLOAD_32, None, False, 0, False).to_bytes()

    def enc1() -> Op:
        return lambda: PublishPacket.build(TOPIC, PAYLOAD_1K, 4242, False, 1, False).to_bytes()

    def decode() -> Op:
        chunks = stream_bytes(4)
        loop = asyncio.new_event_loop()

        async def read_all() -> int:
            reader = asyncio.StreamReader()
            for chunk in chunks:
                reader.feed_data(chunk)
            reader.feed_eof()
            count = 0
            for _ in range(STREAM_PACKETS):
                header = await MQTTFixedHeader.from_stream(reader)
                packet = await PublishPacket.from_stream(reader, fixed_header=header)
                _ = (packet.topic_name, packet.data)
                count += 1
            return count

        return lambda: loop.run_until_complete(read_all())

    return Peer("amqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1, "decode_stream": decode})


# --- mqtt5 (Rust) ------------------------------------------------------------------


def mqtt5_peer() -> Peer:
    import mqtt5

    def enc0() -> Op:
        return lambda: mqtt5.PublishPacket(TOPIC, PAYLOAD_32).write()

    def enc1() -> Op:
        qos1 = mqtt5.QoS.AT_LEAST_ONCE
        return lambda: mqtt5.PublishPacket(TOPIC, PAYLOAD_1K, qos=qos1, packet_id=4242).write()

    def decode() -> Op:
        chunks = stream_bytes(5)
        read = mqtt5.read

        def run() -> int:
            # The smallest reassembly loop around mqtt5.read: it takes whole packets only.
            buf = bytearray()
            count = 0
            for chunk in chunks:
                buf += chunk
                view = memoryview(buf)
                pos = 0
                end = len(buf)
                while pos < end:
                    try:
                        packet, used = read(view[pos:])
                    except Exception:  # "incomplete": wait for the next chunk
                        break
                    _ = (packet.topic, packet.payload)
                    pos += used
                    count += 1
                view.release()
                del buf[:pos]
            return count

        return run

    return Peer("mqtt5 (Rust)", 5, {"encode_qos0": enc0, "encode_qos1": enc1,
                                    "decode_stream": decode})


def all_peers() -> list[Peer]:
    logging.getLogger("gmqtt").setLevel(logging.WARNING)
    peers: list[Peer] = []
    try:
        importlib.import_module("mqttquic._codec")
        peers += [mqttquic_peer("mqttquic._codec", "mqttquic cython", 4),
                  mqttquic_peer("mqttquic._codec", "mqttquic cython", 5)]
    except ImportError:
        pass
    peers += [mqttquic_peer("mqttquic._codec_py", "mqttquic python", 4),
              mqttquic_peer("mqttquic._codec_py", "mqttquic python", 5)]
    for factory in (paho_peer, gmqtt_peer, amqtt_peer, mqtt5_peer):
        try:
            peers.append(factory())
        except ImportError as exc:
            logging.getLogger("bench").warning("peer left out: %s", exc)
    return peers
