# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython MQTT codec: the same API as ``_codec_py.py``, faster.

Framing, remaining-length varints, stream reassembly, PUBLISH and the 2-byte
acks are written here in C; every other packet goes to the shared decoders of
``_packets_c`` (the compiled ``_packets_py.py``), so both twins share one
definition of the rarer packets and of MQTT 5 properties.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
from libc.string cimport memchr, memcmp, memcpy, memmove

from mqttquic._packets_c cimport Packet, Publish, _Ack, Puback, Pubrec, Pubrel, Pubcomp

from mqttquic._packets_c import (
    Auth, Connack, Connect, Disconnect, Pingreq, Pingresp, Suback, Subscribe, Subscription,
    Unsuback, Unsubscribe, Will,
)
from mqttquic._packets_c import decode_body as _decode_body_shared
from mqttquic._packets_c import encode_publish as _encode_publish_shared
from mqttquic.errors import MalformedPacket, PacketTooLarge
from mqttquic.properties import decode_properties as _decode_properties
from mqttquic.properties import encode_properties as _encode_properties
from mqttquic.topics import validate_topic_name as _validate_topic_name

__all__ = [
    "IMPLEMENTATION", "DEFAULT_MAX_PACKET_SIZE", "encode_varint", "decode_varint", "encode",
    "encode_publish", "decode_packet", "StreamDecoder",
    "Packet", "Will", "Subscription", "Connect", "Connack", "Publish", "Puback", "Pubrec",
    "Pubrel", "Pubcomp", "Subscribe", "Suback", "Unsubscribe", "Unsuback", "Pingreq",
    "Pingresp", "Disconnect", "Auth",
]

IMPLEMENTATION = "cython"
DEFAULT_MAX_PACKET_SIZE = 268_435_460

DEF MAX_VARINT = 268435455
DEF PUBLISH_PROPS = 3

# Status of _read_varint: value >= 0, or one of these.
DEF NEED_MORE = -1
DEF TOO_LONG = -2
DEF NOT_MINIMAL = -3


cdef inline Py_ssize_t _read_varint(const unsigned char* p, Py_ssize_t n,
                                    Py_ssize_t* used) noexcept:
    cdef Py_ssize_t value = 0
    cdef int shift = 0
    cdef Py_ssize_t i = 0
    cdef unsigned char byte
    while i < n:
        byte = p[i]
        i += 1
        value |= <Py_ssize_t>(byte & 0x7F) << shift
        if not (byte & 0x80):
            if byte == 0 and shift:
                return NOT_MINIMAL
            used[0] = i
            return value
        shift += 7
        if shift == 28:
            return TOO_LONG
    return NEED_MORE


cdef object _varint_error(Py_ssize_t status):
    if status == TOO_LONG:
        return MalformedPacket("variable byte integer longer than 4 bytes [MQTT-1.5.5-1]")
    return MalformedPacket(
        "variable byte integer not encoded in the minimum number of bytes [MQTT-1.5.5-1]")


cdef inline int _write_varint(unsigned char* out, Py_ssize_t value) noexcept:
    cdef int i = 0
    while True:
        if value < 0x80:
            out[i] = <unsigned char>value
            return i + 1
        out[i] = <unsigned char>((value & 0x7F) | 0x80)
        value >>= 7
        i += 1


cdef inline int _varint_size(Py_ssize_t value) noexcept:
    if value < 0x80:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x200000:
        return 3
    return 4


def encode_varint(value):
    """Encode ``value`` as a Variable Byte Integer (1 to 4 bytes)."""
    cdef unsigned char out[4]
    cdef Py_ssize_t n
    # Any int, not only what fits a C ssize_t (32 bits on armhf): the same error as the twin.
    try:
        n = value
    except OverflowError:
        n = -1
    if n < 0 or n > MAX_VARINT:
        raise MalformedPacket(
            f"variable byte integer {value} out of range 0..{MAX_VARINT} [MQTT-1.5.5]")
    return PyBytes_FromStringAndSize(<char*>out, _write_varint(out, n))


def decode_varint(buf, offset=0):
    """Decode a Variable Byte Integer at ``offset``: ``(value, next_offset)``, or
    ``None`` when ``buf`` ends first (need more data)."""
    cdef const unsigned char[::1] view
    cdef const unsigned char* p
    cdef Py_ssize_t n, used = 0, value, start
    try:
        start = offset
    except OverflowError:
        start = -1
    if type(buf) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(buf)
        n = PyBytes_GET_SIZE(buf)
    else:
        view = buf
        n = view.shape[0]
        p = &view[0] if n else NULL
    if start < 0 or start > n:
        raise IndexError("offset out of range")
    value = _read_varint(p + start, n - start, &used)
    if value == NEED_MORE:
        return None
    if value < 0:
        raise _varint_error(value)
    return value, start + used


cdef inline bint _bad_topic_bytes(const char* p, Py_ssize_t n) noexcept:
    return (memchr(p, b'+', n) != NULL or memchr(p, b'#', n) != NULL
            or memchr(p, 0, n) != NULL)


# The last topic encode_publish validated. A device publishes to the same few
# topic objects over and over; an identity hit skips UTF-8 conversion and the
# wildcard scan.
cdef object _last_topic = None
cdef const char* _last_topic_p = NULL
cdef Py_ssize_t _last_topic_n = 0


@cython.binding(False)
def encode_publish(str topic not None, payload, int qos=0, packet_id=None, bint retain=False,
                   bint dup=False, dict properties=None, int protocol_version=4):
    """Encode a PUBLISH from its fields."""
    global _last_topic, _last_topic_p, _last_topic_n
    cdef const char* topic_p = NULL
    cdef Py_ssize_t topic_n, payload_n, body_n, total
    cdef const unsigned char[::1] payload_view
    cdef const char* payload_p
    cdef bytes out
    cdef unsigned char* w
    cdef long pid = 0
    if properties or qos < 0 or qos > 2 or (dup and not qos):
        # Unusual cases: the shared encoder validates and explains.
        return _encode_publish_shared(topic, payload, qos, packet_id, retain, dup, properties,
                                      protocol_version)
    if topic is _last_topic:
        # Validated before; the str keeps its UTF-8 form alive while we hold it.
        topic_p = _last_topic_p
        topic_n = _last_topic_n
    else:
        try:
            topic_p = PyUnicode_AsUTF8AndSize(topic, &topic_n)
        except UnicodeEncodeError:
            topic_n = 0
        if topic_n == 0 or topic_n > 0xFFFF or _bad_topic_bytes(topic_p, topic_n):
            return _encode_publish_shared(topic, payload, qos, packet_id, retain, dup, properties,
                                          protocol_version)
        _last_topic = topic
        _last_topic_p = topic_p
        _last_topic_n = topic_n
    if qos:
        if type(packet_id) is not int or not 1 <= <long>packet_id <= 0xFFFF:
            raise MalformedPacket(
                f"PUBLISH packet identifier must be 1..65535, not {packet_id!r} [MQTT-2.2.1-3]")
        pid = packet_id
    if type(payload) is bytes:
        payload_p = PyBytes_AS_STRING(payload)
        payload_n = PyBytes_GET_SIZE(payload)
    else:
        payload_view = payload
        payload_n = payload_view.shape[0]
        payload_p = <const char*>&payload_view[0] if payload_n else NULL
    body_n = 2 + topic_n + (2 if qos else 0) + (1 if protocol_version == 5 else 0) + payload_n
    if body_n > MAX_VARINT:
        raise MalformedPacket(f"PUBLISH of {body_n} bytes exceeds the MQTT maximum")
    total = 1 + _varint_size(body_n) + body_n
    out = PyBytes_FromStringAndSize(NULL, total)
    w = <unsigned char*>PyBytes_AS_STRING(out)
    w[0] = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    w += 1
    w += _write_varint(w, body_n)
    w[0] = <unsigned char>(topic_n >> 8)
    w[1] = <unsigned char>topic_n
    memcpy(w + 2, topic_p, topic_n)
    w += 2 + topic_n
    if qos:
        w[0] = <unsigned char>(pid >> 8)
        w[1] = <unsigned char>pid
        w += 2
    if protocol_version == 5:
        w[0] = 0
        w += 1
    if payload_n:
        memcpy(w, payload_p, payload_n)
    return out


cdef bytes _encode_ack(int first_byte, object packet_id):
    cdef bytes out
    cdef unsigned char* w
    cdef long pid
    if type(packet_id) is not int or not 1 <= <long>packet_id <= 0xFFFF:
        return None
    pid = packet_id
    out = PyBytes_FromStringAndSize(NULL, 4)
    w = <unsigned char*>PyBytes_AS_STRING(out)
    w[0] = first_byte
    w[1] = 2
    w[2] = <unsigned char>(pid >> 8)
    w[3] = <unsigned char>pid
    return out


def encode(packet, int protocol_version=4):
    """Encode any packet for MQTT 3.1.1 (4) or 5.0 (5)."""
    cdef Publish pub
    cdef _Ack ack
    cdef bytes out
    if type(packet) is Publish:
        pub = <Publish>packet
        return encode_publish(pub.topic, pub.payload, pub.qos, pub.packet_id, pub.retain,
                              pub.dup, pub.properties, protocol_version)
    if isinstance(packet, _Ack):
        ack = <_Ack>packet
        if not ack.reason_code and not ack.properties:
            out = _encode_ack(ack._first_byte, ack.packet_id)
            if out is not None:
                return out
    return packet.encode(protocol_version)


cdef class _TopicCache:
    """The last topic a stream carried.

    Streams repeat topics (telemetry, commands): a hit skips UTF-8 decoding and
    topic validation, which are most of the cost of a small PUBLISH. The str's
    own UTF-8 form (its data, for ASCII) is what we compare, so a miss costs no
    extra allocation."""

    cdef str topic
    cdef const char* utf8
    cdef Py_ssize_t size

    cdef inline object lookup(self, const unsigned char* p, Py_ssize_t n):
        if self.topic is not None and self.size == n and memcmp(self.utf8, p, n) == 0:
            return self.topic
        return None

    cdef inline int store(self, str topic) except -1:
        self.utf8 = PyUnicode_AsUTF8AndSize(topic, &self.size)
        self.topic = topic
        return 0


cdef object _decode_publish(const unsigned char* p, Py_ssize_t n, int flags, int version,
                            _TopicCache cache):
    """PUBLISH body at p[0:n] -> Publish. Falls back to the shared decoder for
    anything unusual, so that errors read the same in both twins."""
    cdef int qos = (flags >> 1) & 3
    cdef Py_ssize_t topic_n, pos
    cdef int pid = 0
    cdef Publish pub
    cdef object topic = None
    if qos == 3 or ((flags & 8) and not qos) or n < 2:
        return None
    topic_n = (p[0] << 8) | p[1]
    pos = 2 + topic_n
    if pos > n or topic_n == 0:
        return None
    if cache is not None:
        topic = cache.lookup(p + 2, topic_n)
    if topic is None:
        if _bad_topic_bytes(<const char*>p + 2, topic_n):
            return None
        try:
            topic = PyUnicode_DecodeUTF8(<const char*>p + 2, topic_n, NULL)
        except UnicodeDecodeError:
            return None
        if cache is not None:
            cache.store(topic)
    if qos:
        if pos + 2 > n:
            return None
        pid = (p[pos] << 8) | p[pos + 1]
        if pid == 0:
            return None
        pos += 2
    if version == 5:
        if pos >= n or p[pos] != 0:
            return None
        pos += 1
    pub = Publish.__new__(Publish)
    pub.topic = topic
    pub.payload = PyBytes_FromStringAndSize(<const char*>p + pos, n - pos)
    pub.qos = qos
    pub.retain = flags & 1
    pub.dup = (flags >> 3) & 1
    pub.packet_id = pid if qos else None
    pub.properties = {}
    return pub


cdef object _decode_ack(const unsigned char* p, Py_ssize_t n, int first):
    cdef _Ack ack
    cdef int pid
    if n != 2:
        return None
    pid = (p[0] << 8) | p[1]
    if pid == 0:
        return None
    if first == 0x40:
        ack = Puback.__new__(Puback)
    elif first == 0x50:
        ack = Pubrec.__new__(Pubrec)
    elif first == 0x62:
        ack = Pubrel.__new__(Pubrel)
    elif first == 0x70:
        ack = Pubcomp.__new__(Pubcomp)
    else:
        return None
    ack.packet_id = pid
    ack.reason_code = 0
    ack.properties = {}
    return ack


cdef inline object _decode_one(const unsigned char* p, Py_ssize_t n, int first, int version,
                               _TopicCache cache):
    """One packet from its first byte and body."""
    cdef object packet = None
    cdef int ptype = first >> 4
    if ptype == 3:
        packet = _decode_publish(p, n, first & 0x0F, version, cache)
    elif 4 <= ptype <= 7:
        packet = _decode_ack(p, n, first)
    if packet is None:
        packet = _decode_body_shared(first, PyBytes_FromStringAndSize(<const char*>p, n), version)
    return packet


def decode_packet(data, int protocol_version=4):
    """Decode exactly one complete packet; anything short of that or beyond it is malformed."""
    cdef bytes raw = bytes(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw), used = 0, length, end
    if not n:
        raise MalformedPacket("empty input: a packet needs at least 2 bytes")
    length = _read_varint(p + 1, n - 1, &used)
    if length == NEED_MORE:
        raise MalformedPacket("input ends inside the remaining length")
    if length < 0:
        raise _varint_error(length)
    end = 1 + used + length
    if end > n:
        raise MalformedPacket(f"input ends {end - n} bytes before the packet does")
    if end < n:
        raise MalformedPacket(f"{n - end} bytes after the end of the packet")
    return _decode_one(p + 1 + used, length, p[0], protocol_version, None)


cdef class StreamDecoder:
    """Reassembles packets from a byte stream cut at arbitrary places.

    ``feed`` returns every packet completed by the new bytes. Bytes that do not
    yet make a whole packet are kept; the remaining length is checked against
    ``max_packet_size`` as soon as it is known, before anything is buffered for
    the body. After a CONNECT is decoded, ``protocol_version`` follows the level
    it carries (a server learns the version from the client's CONNECT).
    """

    cdef public int protocol_version
    cdef public Py_ssize_t max_packet_size
    cdef bytearray _buffer
    cdef object _error
    cdef _TopicCache _topics

    def __init__(self, int protocol_version=4, Py_ssize_t max_packet_size=DEFAULT_MAX_PACKET_SIZE):
        self.protocol_version = protocol_version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self._error = None
        self._topics = _TopicCache()

    @property
    def buffered(self):
        """Bytes held for a packet that is not complete yet."""
        return PyByteArray_GET_SIZE(self._buffer)

    def feed(self, data):
        cdef bytearray buffer = self._buffer
        cdef Py_ssize_t held = PyByteArray_GET_SIZE(buffer)
        cdef const unsigned char[::1] view
        cdef const unsigned char* p
        cdef Py_ssize_t n, pos = 0, length, start, total, used = 0
        cdef Py_ssize_t maximum = self.max_packet_size
        cdef int version = self.protocol_version
        cdef unsigned char first
        cdef list out = []
        cdef object keep = data
        if self._error is not None:
            raise MalformedPacket(f"stream already failed: {self._error}")
        if held:
            buffer += data
            p = <const unsigned char*>PyByteArray_AS_STRING(buffer)
            n = PyByteArray_GET_SIZE(buffer)
        elif type(data) is bytes:
            # Nothing pending: parse the caller's bytes in place, copy only the tail.
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            view = data
            n = view.shape[0]
            p = &view[0] if n else NULL
        try:
            while n - pos >= 2:
                first = p[pos]
                if p[pos + 1] < 0x80:
                    length = p[pos + 1]
                    used = 1
                else:
                    length = _read_varint(p + pos + 1, n - pos - 1, &used)
                    if length == NEED_MORE:
                        break
                    if length < 0:
                        raise _varint_error(length)
                start = pos + 1 + used
                total = 1 + used + length
                if total > maximum:
                    raise PacketTooLarge(
                        f"packet of {total} bytes exceeds the maximum packet size {maximum}"
                        " [MQTT-3.1.2-24]")
                if start + length > n:
                    break
                packet = _decode_one(p + start, length, first, version, self._topics)
                if first == 0x10:
                    version = self.protocol_version = packet.protocol_version
                out.append(packet)
                pos = start + length
        except MalformedPacket as exc:
            self._error = str(exc)
            exc.packets = out
            raise
        if held:
            if pos:
                memmove(PyByteArray_AS_STRING(buffer), PyByteArray_AS_STRING(buffer) + pos, n - pos)
                PyByteArray_Resize(buffer, n - pos)
        elif pos < n:
            PyByteArray_Resize(buffer, n - pos)
            memcpy(PyByteArray_AS_STRING(buffer), p + pos, n - pos)
        return out


# cimported types are not module attributes; publish them so that this module
# exports the same names as _codec_py.
globals().update(Packet=Packet, Publish=Publish, Puback=Puback, Pubrec=Pubrec, Pubrel=Pubrel,
                 Pubcomp=Pubcomp)
