"""ConnectionConfig: defaults, validation, and both config file shapes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from mqttquic.certs import CertificateFiles
from mqttquic.config import ConnectionConfig
from mqttquic.errors import ConnectError, TLSFileError

ROOT = Path(__file__).resolve().parent.parent


def test_seed_defaults() -> None:
    config = ConnectionConfig()
    assert (config.quic_port, config.tcp_port) == (14567, 8884)
    assert config.session_ticket_file == ".mqtt_session_ticket"
    assert config.protocol_version == 4 and not config.insecure
    assert "secret" not in repr(ConnectionConfig(password="secret"))


def test_client_id_falls_back_to_device_id_then_random() -> None:
    assert ConnectionConfig(device_id="d", client_id="c").effective_client_id == "c"
    assert ConnectionConfig(device_id="d").effective_client_id == "d"
    generated = ConnectionConfig()
    assert generated.effective_client_id.startswith("mqttquic-")
    assert generated.effective_client_id == generated.effective_client_id


@pytest.mark.parametrize("bad", [{"protocol_version": 3}, {"transport": "udp"},
                                 {"max_streams": 10}, {"tls_version": "1.1"}])
def test_invalid_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ConnectionConfig(**bad)  # type: ignore[arg-type]


def test_example_file_lists_every_field_and_loads(certs: CertificateFiles, tmp_path: Path) -> None:
    example = ROOT / "examples" / "mqtt-quic-config.example.json"
    data = json.loads(example.read_text())
    names = {f.name for f in dataclasses.fields(ConnectionConfig)} - {"tls_context"}
    assert set(data) - {"$comment"} == names
    # As a user copies it: beside the CA file it names.
    path = tmp_path / example.name
    path.write_text(example.read_text())
    shutil.copy(certs.ca_file, tmp_path / "ca-chain.pem")
    config = ConnectionConfig.from_file(path)
    assert config.device_id == "sensor-7"
    assert config.will is not None
    assert (config.will.topic, config.will.payload, config.will.qos, config.will.retain) == (
        "devices/sensor-7/status", b"offline", 1, True)
    assert config.ca_file == str(tmp_path / "ca-chain.pem")  # relative to the file


def test_a_tls_file_that_cannot_be_used_is_named_with_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"host": "h", "ca_file": "missing.pem"}))
    with pytest.raises(TLSFileError) as caught:
        ConnectionConfig.from_file(path)
    assert str(caught.value) == (f"ca_file {tmp_path / 'missing.pem'}: No such file or directory"
                                 f" (set in {path})")
    assert isinstance(caught.value, ConnectError) and caught.value.setting == "ca_file"


def test_readme_documents_every_field() -> None:
    readme = (ROOT / "README.md").read_text()
    for field in dataclasses.fields(ConnectionConfig):
        assert f"`{field.name}`" in readme, field.name


def test_platform_bundle_shape(certs: CertificateFiles, tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    bundle = {
        "host": "mqtt.platform.example", "port": 14567, "transport": "quic",
        "tls": {"version": "1.3", "ca_file": "certs/ca-chain.pem", "verify_server": True},
        "auth": {"username": "device-42", "password": "s3cret"},
        "connection": {"keepalive": 30, "clean_session": False, "connect_timeout": 7},
        "device_id": "device-42",
    }
    path = tmp_path / "mqtt-quic-config.json"
    path.write_text(json.dumps(bundle))
    shutil.copy(certs.ca_file, tmp_path / "certs" / "ca-chain.pem")
    config = ConnectionConfig.from_file(path)
    assert (config.host, config.quic_port, config.transport) == ("mqtt.platform.example", 14567,
                                                                 "auto")
    assert config.ca_file == str(tmp_path / "certs" / "ca-chain.pem")
    assert (config.username, config.password) == ("device-42", "s3cret")
    assert (config.keepalive, config.clean_start, config.connect_timeout) == (30, False, 7.0)
    assert config.tls_version == "1.3" and not config.insecure

    bundle.update(transport="tcp", port=8883, tls={"verify_server": False})
    path.write_text(json.dumps(bundle))
    config = ConnectionConfig.from_file(path)
    assert (config.transport, config.tcp_port, config.insecure) == ("tcp", 8883, True)


@pytest.mark.parametrize(("data", "key"), [
    ({"host": "h", "colour": "red"}, "'colour'"),
    ({"host": "h", "port": 1, "tls": {"ca": "x"}}, "'tls.ca'"),
    ({"host": "h", "auth": {"user": "x"}}, "'auth.user'"),
    ({"port": 1, "connection": {"keep_alive": 3}}, "'connection.keep_alive'"),
    ({"port": 1, "extra": 3}, "'extra'"),
])
def test_unknown_keys_are_named(tmp_path: Path, data: dict[str, object], key: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"unknown key {key}"):
        ConnectionConfig.from_file(path)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{host:")
    with pytest.raises(ValueError, match="not valid JSON"):
        ConnectionConfig.from_file(path)
