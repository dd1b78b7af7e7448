"""The demo and the CLI, run as a user runs them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from mqttquic.certs import CertificateFiles

from .brokers import Mosquitto, free_port, start_child

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_by_itself_and_exits_0() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mqttquic", "demo"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "connected over QUIC" in out
    assert "all acknowledged" in out
    assert "received {\"action\":\"set_interval\",\"seconds\":10}" in out
    assert "transport          quic" in out
    assert "session_resumed=True, zero_rtt_used=True" in out
    assert "connected over TCP_TLS" in out
    assert "moved back to QUIC" in out
    assert time.monotonic() - started < 30


def test_cli_gateway_pub_sub_and_example(mosquitto: Mosquitto, certs: CertificateFiles) -> None:
    port = free_port(socket.SOCK_DGRAM)
    gateway = start_child(
        [sys.executable, "-m", "mqttquic", "gateway", "--upstream", f"127.0.0.1:{mosquitto.port}",
         "--quic", f"127.0.0.1:{port}", "--tcp", "off", "--cert", str(certs.cert_file),
         "--key", str(certs.key_file), "--reset-key-file", "off"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert gateway.stdout is not None
        assert "MQTT over QUIC on udp/127.0.0.1" in gateway.stdout.readline()
        common = ["--host", "127.0.0.1", "--quic-port", str(port), "--ca-file",
                  str(certs.ca_file), "--server-name", "localhost"]
        sub = start_child([sys.executable, "-m", "mqttquic", "sub", *common, "-t", "cli/#",
                           "-q", "1", "-C", "1", "-v"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)  # the subscriber has subscribed (0.3-0.6 s); else the test times out
        pub = subprocess.run([sys.executable, "-m", "mqttquic", "pub", *common, "-t", "cli/hello",
                              "-m", "hi there", "-q", "1"], capture_output=True, text=True,
                             timeout=30)
        assert pub.returncode == 0, pub.stderr
        out, _ = sub.communicate(timeout=30)
        assert out.strip() == "cli/hello hi there"
        example = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "mqtt_quic_advanced.py"), *common[:4],
             "--ca-file", str(certs.ca_file), "--wait", "0.5"],
            capture_output=True, text=True, timeout=60)
        assert example.returncode == 0, example.stdout + example.stderr
        assert '"transport": "quic"' in example.stdout
        for name in ("temp", "humid", "press"):
            assert f'/telemetry/{name}": true' in example.stdout
    finally:
        gateway.terminate()
        gateway.wait(10)


def test_cli_bench_times_the_codec() -> None:
    result = subprocess.run([sys.executable, "-m", "mqttquic", "bench"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "encode QoS 0 PUBLISH" in result.stdout and "decode stream" in result.stdout
