"""Transports: MQTT over QUIC (aioquic) and MQTT over TCP+TLS, behind one interface."""
