"""What a QUIC connection of the client is opened with: aioquic's configuration
(TLS 1.3, ALPN "mqtt", the trust the config names) and the socket options that let
an ICMP "port unreachable" end a handshake at once."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
from typing import Any

from aioquic.quic.configuration import QuicConfiguration

from .._mqtt_quic import ALPN
from .._tls import TLSMaterial, load_tls_material
from ..config import ConnectionConfig

__all__ = ["quic_configuration", "report_icmp_errors"]


def quic_configuration(config: ConnectionConfig, tls: TLSMaterial | None = None
                       ) -> QuicConfiguration:
    """The aioquic client configuration for ``config`` (TLS 1.3, ALPN "mqtt").

    ``tls``: the config's TLS files, already read (``load_tls_material``); read here
    when not given, so that a bad file is a TLSFileError before any packet. From a
    ``config.tls_context`` (made for TCP+TLS), QUIC takes what aioquic can use: the
    verification mode and the CA certificates loaded into it; a client certificate
    inside it cannot be read back, so mutual TLS over QUIC needs ``certfile``."""
    if tls is None:
        tls = load_tls_material(config, ALPN)
    # EMQX sets the idle timeout to 1.5 x keepalive; PINGREQs keep it alive.
    idle = 1.5 * config.keepalive if config.keepalive else 60.0
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], idle_timeout=max(idle, 5.0),
        server_name=config.server_name or config.host,
        verify_mode=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
    )
    if tls.verify:
        if tls.ca_pem is not None:
            configuration.load_verify_locations(cadata=tls.ca_pem.encode("ascii"))
        else:
            _use_system_trust_store(configuration)
    if tls.certificate is not None:
        configuration.certificate = tls.certificate
        configuration.certificate_chain = list(tls.chain)
        configuration.private_key = tls.private_key
    return configuration


def _use_system_trust_store(configuration: QuicConfiguration) -> None:
    """Trust what TCP+TLS trusts (``SSLContext.load_default_certs``): aioquic alone
    would use certifi's bundle, and a private CA installed system-wide would then send
    every connection to TCP+TLS."""
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    cafile = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
    capath = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
    if cafile or capath:
        configuration.load_verify_locations(cafile=cafile, capath=capath)
        return
    # Windows and macOS keep their roots outside OpenSSL's paths: take what ssl loads.
    context = ssl.create_default_context()
    pem = "".join(ssl.DER_cert_to_PEM_cert(der)
                  for der in context.get_ca_certs(binary_form=True))
    if pem:
        configuration.load_verify_locations(cadata=pem.encode("ascii"))


# Linux's IPV6_RECVERR and IP_RECVERR (the socket module names them from Python 3.12 on);
# the dual-stack socket needs both, for IPv6 and IPv4-mapped destinations.
_RECVERR = ((socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25)),
            (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)))


def report_icmp_errors(transport: Any) -> None:
    """ICMP errors reach an unconnected UDP socket only with IP(V6)_RECVERR (Linux):
    "port unreachable" then comes back as ``error_received(ConnectionRefusedError)``."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sys.platform.startswith("linux"):
        for level, option in _RECVERR:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, 1)
