"""Fixtures shared by the test suite.

``codec`` runs a test once per codec twin (ids ``[cython]`` and ``[python]``),
like multidict's tests do. Under ``MQTTQUIC_NO_EXTENSIONS=1`` only the pure
twin is imported, so that run proves the package works without the extension.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mosquitto]]:
    """``brokers(*config_lines, users=None)``: a mosquitto with those settings, started on
    first use and shared by every test that asks for the same ones (as ``mosquitto`` is
    shared); all are stopped at the end of the run, and die with it if it is killed."""
    started: dict[tuple[Any, ...], Mosquitto] = {}

    def broker(*extra: str, users: dict[str, str] | None = None) -> Mosquitto:
        key = (extra, tuple(sorted((users or {}).items())))
        if key not in started:
            started[key] = Mosquitto(tmp_path_factory.mktemp("mosquitto"), users=users,
                                     extra=list(extra)).start()
        return started[key]

    yield broker
    for running in started.values():
        running.stop()


@pytest.fixture(scope="session")
def mosquitto(brokers: Callable[..., Mosquitto]) -> Mosquitto:
    return brokers()


@pytest.fixture(scope="session")
def mosquitto_auth(brokers: Callable[..., Mosquitto]) -> Mosquitto:
    return brokers(users=USERS)


@pytest.fixture
def topic_root() -> str:
    """A topic prefix of this test's own, so tests sharing a broker do not see each other."""
    return f"test/{uuid.uuid4().hex[:10]}"


def gateway_config(broker: Mosquitto, certs: CertificateFiles) -> Any:
    from mqttquic.gateway import GatewayConfig

    return GatewayConfig(upstream_port=broker.port, quic_port=0, tcp_port=0,
                         cert_file=str(certs.cert_file), key_file=str(certs.key_file))


@pytest.fixture
async def gateways(certs: CertificateFiles) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await gateways(broker, **config_changes)``: a started gateway in front of
    ``broker`` (``GatewayConfig`` fields changed as given), stopped after the test."""
    from mqttquic.gateway import Gateway

    opened: list[Any] = []

    async def gateway(broker: Mosquitto, **changes: Any) -> Any:
        config = gateway_config(broker, certs)
        for name, value in changes.items():
            setattr(config, name, value)
        started = Gateway(config)
        await started.start()
        opened.append(started)
        return started

    yield gateway
    for started in reversed(opened):
        await started.stop()


@pytest.fixture
async def gateway(gateways: Callable[..., Awaitable[Any]], mosquitto: Mosquitto) -> Any:
    return await gateways(mosquitto)


@pytest.fixture
async def auth_gateway(gateways: Callable[..., Awaitable[Any]], mosquitto_auth: Mosquitto) -> Any:
    return await gateways(mosquitto_auth)


def client_config(gateway: Any, certs: CertificateFiles, **overrides: Any) -> Any:
    from mqttquic.config import ConnectionConfig

    settings: dict[str, Any] = dict(host="127.0.0.1", quic_port=gateway.quic_port,
                                    tcp_port=gateway.tcp_port, server_name="localhost",
                                    ca_file=str(certs.ca_file), connect_timeout=5.0,
                                    device_id=f"dev-{uuid.uuid4().hex[:8]}",
                                    session_ticket_file=str(Path(certs.ca_file).parent / "tickets"))
    settings.update(overrides)
    return ConnectionConfig(**settings)
