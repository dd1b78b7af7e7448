# Declarations that turn the classes of _packets_py.py (compiled as _packets_c
# through the symlink _packets_c.py) into extension types. _codec.pyx cimports
# these to fill packets with direct struct writes.

cdef class Packet:
    pass

cdef class Will(Packet):
    cdef public str topic
    cdef public bytes payload
    cdef public int qos
    cdef public bint retain
    cdef public dict properties

cdef class Subscription(Packet):
    cdef public str topic_filter
    cdef public int qos
    cdef public bint no_local
    cdef public bint retain_as_published
    cdef public int retain_handling

cdef class Connect(Packet):
    cdef public str client_id
    cdef public bint clean_start
    cdef public int keepalive
    cdef public object username
    cdef public object password
    cdef public object will
    cdef public dict properties
    cdef public int protocol_version

cdef class Connack(Packet):
    cdef public bint session_present
    cdef public int reason_code
    cdef public dict properties

cdef class Publish(Packet):
    cdef public str topic
    cdef public bytes payload
    cdef public int qos
    cdef public bint retain
    cdef public bint dup
    cdef public object packet_id
    cdef public dict properties

cdef class _Ack(Packet):
    cdef public object packet_id
    cdef public int reason_code
    cdef public dict properties

cdef class Puback(_Ack):
    pass

cdef class Pubrec(_Ack):
    pass

cdef class Pubrel(_Ack):
    pass

cdef class Pubcomp(_Ack):
    pass

cdef class Subscribe(Packet):
    cdef public object packet_id
    cdef public list subscriptions
    cdef public dict properties

cdef class Suback(Packet):
    cdef public object packet_id
    cdef public list reason_codes
    cdef public dict properties

cdef class Unsubscribe(Packet):
    cdef public object packet_id
    cdef public list topic_filters
    cdef public dict properties

cdef class Unsuback(Suback):
    pass

cdef class _Empty(Packet):
    pass

cdef class Pingreq(_Empty):
    pass

cdef class Pingresp(_Empty):
    pass

cdef class Disconnect(Packet):
    cdef public int reason_code
    cdef public dict properties

cdef class Auth(Disconnect):
    pass
