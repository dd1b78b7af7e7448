"""Which twin is loaded, and what importing the codec pulls in."""

from __future__ import annotations

import os
import subprocess
import sys

from mqttquic import codec
from mqttquic._env import no_extensions


def _extension_expected() -> bool:
    if no_extensions():
        return False
    return os.environ.get("CI") == "true" or os.environ.get("MQTTQUIC_EXPECT_EXTENSION") == "1"


def test_extension_loaded_when_expected() -> None:
    if _extension_expected():
        assert codec.IMPLEMENTATION == "cython", (
            "the Cython codec was expected (CI, no MQTTQUIC_NO_EXTENSIONS) but the pure"
            " twin was loaded: did the build fail?"
        )
    else:
        assert codec.IMPLEMENTATION in ("cython", "python")


def test_env_var_forces_pure_twin() -> None:
    env = dict(os.environ, MQTTQUIC_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", "import mqttquic.codec as c; print(c.IMPLEMENTATION, c.Publish.__module__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == ["python", "mqttquic._packets_py"]


def test_packets_module_matches_codec() -> None:
    from mqttquic import packets

    assert packets.Publish is codec.Publish
    assert packets.Connect is codec.Connect


def test_codec_import_pulls_in_neither_aioquic_nor_paho() -> None:
    code = (
        "import sys, mqttquic, mqttquic.codec, mqttquic.packets\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aioquic', 'paho', 'asyncio'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_client_without_an_outbox_imports_neither_sqlite_nor_paho() -> None:
    # What a device that does not use them pays in memory: sqlite3 about 1 MB, paho
    # until TCP+TLS is tried.
    code = (
        "import sys, mqttquic\n"
        "client = mqttquic.Client('localhost')\n"
        "import mqttquic.transports.quic\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite3', 'paho'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_package_exports_load_lazily() -> None:
    import mqttquic

    assert mqttquic.Client is mqttquic.MQTTQUICAdvancedClient
    from mqttquic import compat
    from mqttquic.transports.quic import QuicTransport

    assert compat.MQTTQUICAdvancedClient is mqttquic.Client
    assert compat.MQTTQuicAdvancedProtocol is QuicTransport
    assert mqttquic.ConnectionConfig().quic_port == 14567
    assert mqttquic.GatewayConfig().quic_port == 14567
    for name in mqttquic.__all__:
        assert getattr(mqttquic, name) is not None
