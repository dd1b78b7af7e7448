"""The codecs we measure, each through its own fastest public or internal path.

Every peer offers the same operations, each an ``Op`` (a timeit statement and its
namespace) made by a factory so that set-up is not timed:

- encode_qos0: topic + 32-byte payload -> bytes of a QoS 0 PUBLISH
- encode_qos1: topic + 1 KiB payload + packet id -> bytes of a QoS 1 PUBLISH
- decode_stream: 10,000 QoS 0 PUBLISHes fed in 1400-byte chunks -> (topic, payload) objects
- decode_mixed: the same, but the topic changes on every packet (1,000 topics in turn), so
  that no codec profits from a stream repeating its topic
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

@dataclass
class Op:
    """A timeit statement and its namespace: no wrapper call between timer and codec."""

    stmt: str
    namespace: dict[str, Any]

    @classmethod
    def call(cls, fn: Callable[[], Any]) -> Op:
        return cls("fn()", {"fn": fn})

    def run_once(self) -> Any:
        return eval(self.stmt, dict(self.namespace))  # noqa: S307 - our own statement


@dataclass
class Peer:
    name: str
    protocol_version: int  # the MQTT version its codec writes: ratios compare like with like
    ops: dict[str, Callable[[], Op]] = field(default_factory=dict)


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def stream_bytes(protocol_version: int, mixed: bool = False) -> list[bytes]:
    from mqttquic import _codec_py

    if not mixed:
        one = _codec_py.encode_publish(TOPIC, PAYLOAD_32, protocol_version=protocol_version)
        return chunks_of(one * STREAM_PACKETS)
    return chunks_of(b"".join(
        _codec_py.encode_publish(f"device/{i % 1000:04d}/telemetry/sensors", PAYLOAD_32,
                                 protocol_version=protocol_version)
        for i in range(STREAM_PACKETS)))


def decode_ops(decode: Callable[[bool], Op]) -> dict[str, Callable[[], Op]]:
    return {"decode_stream": lambda: decode(False), "decode_mixed": lambda: decode(True)}


# --- mqttquic ------------------------------------------------------------------


def mqttquic_peer(module_name: str, label: str, protocol_version: int) -> Peer:
    codec = importlib.import_module(module_name)
    v = protocol_version

    def enc0() -> Op:
        # From topic + payload, as a caller writes it (protocol_version only when not 3.1.1).
        stmt = "encode_publish(TOPIC, PAYLOAD)" if v == 4 else \
            "encode_publish(TOPIC, PAYLOAD, protocol_version=5)"
        return Op(stmt, {"encode_publish": codec.encode_publish, "TOPIC": TOPIC,
                         "PAYLOAD": PAYLOAD_32})

    def enc1() -> Op:
        return Op("encode_publish(TOPIC, PAYLOAD, 1, 4242, False, False, None, V)",
                  {"encode_publish": codec.encode_publish, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_1K,
                   "V": v})

    def decode(mixed: bool) -> Op:
        chunks = stream_bytes(v, mixed)

        def run() -> int:
            decoder = codec.StreamDecoder(v)
            count = 0
            for chunk in chunks:
                count += len(decoder.feed(chunk))
            return count

        return Op.call(run)

    def venc() -> Op:
        return Op("[encode_varint(n) for n in VARINTS]",
                  {"encode_varint": codec.encode_varint, "VARINTS": VARINTS})

    def vdec() -> Op:
        encoded = [codec.encode_varint(n) for n in VARINTS]
        return Op("[decode_varint(b) for b in ENCODED]",
                  {"decode_varint": codec.decode_varint, "ENCODED": encoded})

    return Peer(f"{label} (v{'5' if v == 5 else '3.1.1'})", v,
                {"encode_qos0": enc0, "encode_qos1": enc1, **decode_ops(decode),
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
        # paho's publish() encodes the topic to bytes too; that is part of the work.
        return Op("send(0, TOPIC.encode(), PAYLOAD, 0, False)",
                  {"send": client()._send_publish, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_32})

    def enc1() -> Op:
        return Op("send(4242, TOPIC.encode(), PAYLOAD, 1, False)",
                  {"send": client()._send_publish, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_1K})

    def decode(mixed: bool) -> Op:
        chunks = stream_bytes(4, mixed)
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

        return Op.call(run)

    def venc() -> Op:
        return Op("[pack(bytearray(), n) for n in VARINTS]",
                  {"pack": client()._pack_remaining_length, "VARINTS": VARINTS})

    return Peer("paho-mqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1,
                                 **decode_ops(decode), "varint_encode": venc})


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
        return Op("build(Message(TOPIC, PAYLOAD, qos=0), PROTO)",
                  {"build": PublishPacket.build_package, "Message": gmqtt.Message, "TOPIC": TOPIC,
                   "PAYLOAD": PAYLOAD_32, "PROTO": _Protocol()})

    def enc1() -> Op:
        proto = _Protocol()
        # gmqtt takes the packet id from its allocator; give it back as an ack would.
        return Op("free(build(Message(TOPIC, PAYLOAD, qos=1), PROTO)[0])",
                  {"build": PublishPacket.build_package, "Message": gmqtt.Message, "TOPIC": TOPIC,
                   "PAYLOAD": PAYLOAD_1K, "PROTO": proto, "free": proto.id_generator.free_id})

    def decode(mixed: bool) -> Op:
        chunks = stream_bytes(4, mixed)
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

        return Op.call(run)

    def venc() -> Op:
        return Op("[pack(n) for n in VARINTS]",
                  {"pack": gutils.pack_variable_byte_integer, "VARINTS": VARINTS})

    def vdec() -> Op:
        encoded = [bytes(gutils.pack_variable_byte_integer(n)) for n in VARINTS]
        return Op("[unpack(b) for b in ENCODED]",
                  {"unpack": gutils.unpack_variable_byte_integer, "ENCODED": encoded})

    return Peer("gmqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1, **decode_ops(decode),
                             "varint_encode": venc, "varint_decode": vdec})


# --- amqtt -----------------------------------------------------------------------


def amqtt_peer() -> Peer:
    from amqtt.mqtt.packet import MQTTFixedHeader
    from amqtt.mqtt.publish import PublishPacket

    def enc0() -> Op:
        return Op("build(TOPIC, PAYLOAD, None, False, 0, False).to_bytes()",
                  {"build": PublishPacket.build, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_32})

    def enc1() -> Op:
        return Op("build(TOPIC, PAYLOAD, 4242, False, 1, False).to_bytes()",
                  {"build": PublishPacket.build, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_1K})

    def decode(mixed: bool) -> Op:
        chunks = stream_bytes(4, mixed)
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

        return Op.call(lambda: loop.run_until_complete(read_all()))

    return Peer("amqtt", 4, {"encode_qos0": enc0, "encode_qos1": enc1, **decode_ops(decode)})


# --- mqtt5 (Rust) ------------------------------------------------------------------


def mqtt5_peer() -> Peer:
    import mqtt5

    def enc0() -> Op:
        return Op("PublishPacket(TOPIC, PAYLOAD).write()",
                  {"PublishPacket": mqtt5.PublishPacket, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_32})

    def enc1() -> Op:
        return Op("PublishPacket(TOPIC, PAYLOAD, qos=QOS1, packet_id=4242).write()",
                  {"PublishPacket": mqtt5.PublishPacket, "TOPIC": TOPIC, "PAYLOAD": PAYLOAD_1K,
                   "QOS1": mqtt5.QoS.AT_LEAST_ONCE})

    def decode(mixed: bool) -> Op:
        chunks = stream_bytes(5, mixed)
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

        return Op.call(run)

    return Peer("mqtt5 (Rust)", 5, {"encode_qos0": enc0, "encode_qos1": enc1,
                                    **decode_ops(decode)})


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
