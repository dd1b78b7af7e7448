"""The test suite itself: brokers do not outlive an interrupted run, a machine without
mosquitto skips (or, in CI, fails) cleanly. Each case runs pytest in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .waits import eventually_sync

ROOT = Path(__file__).resolve().parent.parent

SLEEPER = '''
import os, time
from tests.conftest import brokers, mosquitto, mosquitto_auth  # noqa: F401 (fixtures)

def test_sleeps_with_brokers(mosquitto, mosquitto_auth):
    with open(os.environ["PIDS_FILE"], "w") as handle:
        handle.write(f"{mosquitto.process.pid} {mosquitto_auth.process.pid}")
    time.sleep(60)
'''

NEEDS_BROKER = '''
from tests.conftest import brokers, mosquitto_auth  # noqa: F401 (fixtures)

def test_needs_a_broker(mosquitto_auth):
    pass
'''


def _pytest(test_file: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "-c", str(ROOT / "pyproject.toml"), "-rs", str(test_file)],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent (the killed pytest) is gone, init reaps it.
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_brokers_stop_when_the_run_is_interrupted(tmp_path: Path, sig: int) -> None:
    # Before: SIGINT/SIGTERM left three mosquitto processes behind.
    test_file = tmp_path / "test_sleeper.py"
    test_file.write_text(SLEEPER)
    pids_file = tmp_path / "pids"
    run = _pytest(test_file, {"PIDS_FILE": str(pids_file)})
    try:
        eventually_sync(lambda: pids_file.exists() and pids_file.read_text(), 15)
        pids = [int(pid) for pid in pids_file.read_text().split()]
        assert all(_alive(pid) for pid in pids)
        run.send_signal(sig)
        run.communicate(timeout=30)
        eventually_sync(lambda: not any(_alive(pid) for pid in pids), 5)
        assert not [pid for pid in pids if _alive(pid)], "mosquitto outlived the test run"
    finally:
        run.kill()
        run.wait(10)


def test_without_mosquitto_tests_skip_cleanly_outside_ci(tmp_path: Path) -> None:
    # Before: the fixture ran mosquitto_passwd before the check, and errored.
    test_file = tmp_path / "test_broker.py"
    test_file.write_text(NEEDS_BROKER)
    run = _pytest(test_file, {"MQTTQUIC_MOSQUITTO": str(tmp_path / "no-mosquitto"), "CI": ""})
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    assert "1 skipped" in out and "mosquitto is not installed" in out and "error" not in out


def test_without_mosquitto_tests_fail_in_ci(tmp_path: Path) -> None:
    test_file = tmp_path / "test_broker.py"
    test_file.write_text(NEEDS_BROKER)
    run = _pytest(test_file, {"MQTTQUIC_MOSQUITTO": str(tmp_path / "no-mosquitto"), "CI": "true"})
    out, _ = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "mosquitto is not installed" in out and "skipped" not in out
