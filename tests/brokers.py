"""Real brokers for the integration tests: mosquitto from Debian, on free loopback ports."""

from __future__ import annotations

import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mqttquic.brokers import free_port


def mosquitto_binary() -> str:
    """mosquitto's path (``MQTTQUIC_MOSQUITTO`` overrides it); in CI (CI=true) a missing
    mosquitto fails the test, elsewhere skips it."""
    override = os.environ.get("MQTTQUIC_MOSQUITTO")
    candidates = [override] if override else [shutil.which("mosquitto"), "/usr/sbin/mosquitto"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "mosquitto is not installed (make test installs it: apt-get install mosquitto)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: the child gets SIGTERM when the test run dies, however
    it dies (SIGINT, SIGTERM, SIGKILL), so no broker or gateway outlives it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_child(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """A child process of the tests (a broker, a gateway) that ends with the test run."""
    return subprocess.Popen(args, preexec_fn=die_with_parent, **kwargs)  # noqa: PLW1509


class Mosquitto:
    """A mosquitto process with its own config, port and data folder."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None,
                 persistence: bool = False, tls: tuple[Path, Path] | None = None,
                 extra: list[str] | None = None) -> None:
        self.folder = folder
        self.binary = mosquitto_binary()  # first: a machine without mosquitto skips here
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.users = users
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1"]
        if users:
            password_file = folder / "passwords"
            password_file.write_text("")
            passwd = (shutil.which("mosquitto_passwd")
                      or os.path.join(os.path.dirname(self.binary), "mosquitto_passwd"))
            if not os.access(passwd, os.X_OK):
                passwd = "/usr/bin/mosquitto_passwd"
            for user, password in users.items():
                subprocess.run([passwd, "-b", str(password_file), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            cert, key = tls
            lines += [f"listener {self.tls_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}"]
            lines.append("allow_anonymous false" if users else "allow_anonymous true")
            if users:
                lines.append(f"password_file {folder / 'passwords'}")
        if persistence:
            lines += ["persistence true", f"persistence_location {folder}/"]
        # Started as root, mosquitto would switch to the "mosquitto" user, which cannot
        # read pytest's private temporary folders; keep the user we are.
        lines += [f"user {getpass.getuser()}", "max_keepalive 65535", "log_type error",
                  "log_type warning"]
        lines += extra or []  # e.g. a hardened broker's max_packet_size or max_qos
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.process = start_child(
            [self.binary, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "mosquitto.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def relay_both_ways(client: Any, upstream: Any) -> None:
    """Copy bytes both ways between two (reader, writer) pairs until either side ends:
    the body of the small relays the tests put in front of a broker."""
    import asyncio

    async def pipe(src: Any, dst: Any) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(client[0], upstream[1]), pipe(upstream[0], client[1]))


class FaultyProxy:
    """A TCP relay in front of a real broker that can slip bad bytes to its clients.

    The broker's own answers (CONNACK included) pass through untouched; ``inject``
    adds bytes on the way to the client, as a broken broker or network would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: Any = None
        self.client_writers: list[Any] = []
        # When set: the next chunk from the broker that starts with this byte is passed
        # on, then that connection is cut (once).
        self.cut_after: int | None = None
        # When True: nothing more from the broker reaches the clients (a broker that
        # accepted the connection and then never answers).
        self.mute = False

    async def start(self) -> FaultyProxy:
        import asyncio

        async def handle(reader: Any, writer: Any) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self.client_writers.append(writer)

            async def pipe(src: Any, dst: Any, from_broker: bool) -> None:
                try:
                    while data := await src.read(65536):
                        if from_broker and self.mute:
                            continue
                        dst.write(data)
                        if from_broker and self.cut_after is not None and data[0] == self.cut_after:
                            self.cut_after = None
                            await dst.drain()
                            writer.close()
                            up_writer.close()
                            return
                except (ConnectionError, OSError):
                    pass
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def inject(self, data: bytes, connection: int = 0) -> None:
        self.client_writers[connection].write(data)

    async def stop(self) -> None:
        self._server.close()
        for writer in self.client_writers:
            writer.close()
