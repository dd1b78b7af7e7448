"""Fixtures shared by the test suite.

``codec`` runs a test once per codec twin (ids ``[cython]`` and ``[python]``),
like multidict's tests do. Under ``MQTTQUIC_NO_EXTENSIONS=1`` only the pure
twin is imported, so that run proves the package works without the extension.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mqttquic._env import no_extensions
from mqttquic.certs import CertificateFiles, generate_certificates

from .brokers import Mosquitto


def _twins() -> list[str]:
    if no_extensions():
        return ["python"]
    try:
        importlib.import_module("mqttquic._codec")
    except ImportError:
        # test_implementation.py fails when the extension was expected.
        return ["python"]
    return ["cython", "python"]


TWINS = _twins()
# Comparing the twins needs both; under MQTTQUIC_NO_EXTENSIONS=1 there is one.
collect_ignore = [] if len(TWINS) == 2 else ["test_differential.py"]
_MODULES = {"cython": "mqttquic._codec", "python": "mqttquic._codec_py"}


@pytest.fixture(params=TWINS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(_MODULES[request.param])


def twin_modules() -> list[ModuleType]:
    return [importlib.import_module(_MODULES[name]) for name in TWINS]


# --- integration fixtures: real mosquitto, real TLS, real QUIC on loopback ------------------

USERS = {"device": "correct-horse"}


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return generate_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A second CA that did not sign the gateway's certificate."""
    return generate_certificates(tmp_path_factory.mktemp("other-ca"), prefix="other-")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto-auth"), users=USERS).start()
    yield broker
    broker.stop()


@pytest.fixture
def topic_root() -> str:
    """A topic prefix of this test's own, so tests sharing a broker do not see each other."""
    return f"test/{uuid.uuid4().hex[:10]}"


def gateway_config(broker: Mosquitto, certs: CertificateFiles) -> Any:
    from mqttquic.gateway import GatewayConfig

    return GatewayConfig(upstream_port=broker.port, quic_port=0, tcp_port=0,
                         cert_file=str(certs.cert_file), key_file=str(certs.key_file))


@pytest.fixture
async def gateway(mosquitto: Mosquitto, certs: CertificateFiles) -> AsyncIterator[Any]:
    from mqttquic.gateway import Gateway

    async with Gateway(gateway_config(mosquitto, certs)) as gw:
        yield gw


@pytest.fixture
async def auth_gateway(mosquitto_auth: Mosquitto, certs: CertificateFiles) -> AsyncIterator[Any]:
    from mqttquic.gateway import Gateway

    async with Gateway(gateway_config(mosquitto_auth, certs)) as gw:
        yield gw


def client_config(gateway: Any, certs: CertificateFiles, **overrides: Any) -> Any:
    from mqttquic.config import ConnectionConfig

    settings: dict[str, Any] = dict(host="127.0.0.1", quic_port=gateway.quic_port,
                                    tcp_port=gateway.tcp_port, server_name="localhost",
                                    ca_file=str(certs.ca_file), connect_timeout=5.0,
                                    device_id=f"dev-{uuid.uuid4().hex[:8]}",
                                    session_ticket_file=str(Path(certs.ca_file).parent / "tickets"))
    settings.update(overrides)
    return ConnectionConfig(**settings)
