"""The names of the reference design (``mqtt_quic_advanced.py``, whose class, method
and field names are this package's contract), for code written against it.

=============================  ===============================================
reference name                 here
=============================  ===============================================
``MQTTQUICAdvancedClient``     :class:`mqttquic.Client`
``MQTTQuicAdvancedProtocol``   :class:`mqttquic.transports.quic.QuicTransport`
``client.messages()``          ``client.messages`` (also callable)
``protocol.streams``           ``QuicTransport.streams`` (stream id -> topic)
=============================  ===============================================

``MQTTQuicAdvancedProtocol`` is looked up on first use: it imports aioquic, which a
TCP+TLS-only install may not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import Client

if TYPE_CHECKING:
    from .transports.quic import QuicTransport as MQTTQuicAdvancedProtocol  # noqa: F401

__all__ = ["MQTTQUICAdvancedClient", "MQTTQuicAdvancedProtocol"]

MQTTQUICAdvancedClient = Client


def __getattr__(name: str) -> Any:
    if name == "MQTTQuicAdvancedProtocol":
        from .transports.quic import QuicTransport

        return QuicTransport
    raise AttributeError(f"module 'mqttquic.compat' has no attribute {name!r}")
