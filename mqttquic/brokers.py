"""Embedded brokers for the demo: amqtt in-process, or mosquitto as a child process."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

__all__ = ["embedded_broker", "free_port"]

logger = logging.getLogger("mqttquic.brokers")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free now (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_listening(port: int, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"broker did not listen on port {port} within {seconds} s") from None
            await asyncio.sleep(0.05)


@asynccontextmanager
async def _amqtt(port: int) -> AsyncIterator[str]:
    from amqtt.broker import Broker  # type: ignore[import-untyped]

    # amqtt logs every probe and disconnect at ERROR; the demo speaks for itself.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    try:
        await _wait_listening(port)
        yield "amqtt (embedded, in-process)"
    finally:
        await broker.shutdown()


@asynccontextmanager
async def _mosquitto(port: int, binary: str) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="mqttquic-mosquitto-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        process = await asyncio.create_subprocess_exec(binary, "-c", str(conf),
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
        try:
            await _wait_listening(port)
            yield f"mosquitto ({binary})"
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()


def mosquitto_path() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@asynccontextmanager
async def embedded_broker(kind: str = "auto", port: int = 0) -> AsyncIterator[tuple[str, int]]:
    """A plain TCP MQTT broker on 127.0.0.1: ``(description, port)``.

    ``kind``: "amqtt", "mosquitto", or "auto" (amqtt when installed, else mosquitto)."""
    port = port or free_port()
    if kind == "auto":
        try:
            import amqtt  # type: ignore[import-untyped]  # noqa: F401
            kind = "amqtt"
        except ImportError:
            kind = "mosquitto"
    if kind == "amqtt":
        async with _amqtt(port) as description:
            yield description, port
    elif kind == "mosquitto":
        binary = mosquitto_path()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        async with _mosquitto(port, binary) as description:
            yield description, port
    else:
        raise ValueError(f"unknown broker {kind!r}: amqtt, mosquitto or auto")
