"""The build and every way of installing: a failed compile (or Cython) still installs the
pure twin, loudly; ``python -m build`` from a fresh clone makes an sdist and builds the
wheel from it; ``pip install <sdist>`` with build isolation (Cython from the index), and
on a machine without a compiler. The emulated Pi machines are ``make wheels``'s."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "mqttquic" / "__init__.py").read_text())[1]


def packaging(test: Any) -> Any:
    """Slow (they build, and pip fetches from the index), and the same whatever codec twin
    the suite runs: make test runs them in its first pass only, with a longer bound."""
    return pytest.mark.packaging(pytest.mark.timeout(600)(test))


def _copy_source(dest: Path) -> None:
    shutil.copytree(ROOT / "mqttquic", dest / "mqttquic", symlinks=True,
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)


def _build(dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # The suite's own run may set MQTTQUIC_NO_EXTENSIONS; each build here says what it wants.
    base = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    return subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                          env=dict(base, **env), capture_output=True, text=True, timeout=300)


def _implementation(dest: Path, **env: str) -> str:
    code = "import mqttquic.codec as c; print(c.IMPLEMENTATION)"
    # -S: no site-packages, so the editable install of the checkout does not shadow the copy.
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=dest, capture_output=True, text=True,
                         env=dict(os.environ, **env), check=True)
    return out.stdout.strip()


def test_failed_compile_installs_pure_twin_with_a_warning(tmp_path: Path) -> None:
    _copy_source(tmp_path)
    result = _build(tmp_path, CC="false")
    assert result.returncode == 0, result.stderr
    assert "WARNING: the mqttquic Cython codec could not be compiled" in result.stderr
    assert not list((tmp_path / "mqttquic").glob("*.so"))
    env = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    assert _implementation(tmp_path, **env) == "python"


def test_env_var_builds_no_extension(tmp_path: Path) -> None:
    _copy_source(tmp_path)
    result = _build(tmp_path, MQTTQUIC_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert "building no extension" in result.stdout
    assert not list((tmp_path / "mqttquic").glob("*.so"))


def _build_dist(source: Path, out: Path, *kinds: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MQTTQUIC_NO_EXTENSIONS"}
    return subprocess.run([sys.executable, "-m", "build", "--no-isolation", *kinds, "-o", str(out),
                           str(source)], env=dict(base, **env), capture_output=True, text=True,
                          timeout=300)


def test_failed_compile_makes_a_pure_wheel(tmp_path: Path) -> None:
    """Never a platform tag on a wheel without the extension (pip would trust it)."""
    _copy_source(tmp_path / "src")
    result = _build_dist(tmp_path / "src", tmp_path / "dist", "--wheel", CC="false")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "dist").glob("*.whl")] == [f"mqttquic-{VERSION}-py3-none-any.whl"]
    strict = _build_dist(tmp_path / "src", tmp_path / "strict", "--wheel", CC="false",
                         MQTTQUIC_REQUIRE_EXTENSION="1")
    assert strict.returncode != 0
    assert "MQTTQUIC_REQUIRE_EXTENSION is set" in strict.stdout + strict.stderr


def _fresh_clone(dest: Path) -> None:
    """The tree as a clone of it has it: the files git tracks, as they are on disk (so
    uncommitted edits are built too); outside a git checkout (the tests of an unpacked
    sdist), the tree without build products."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
            "*.so", "*.c", "__pycache__", ".venv", "build", "dist", "*.egg-info"))
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source, target = ROOT / name, dest / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``python -m build`` from a fresh clone, as a packager runs it: build isolation
    (setuptools and Cython from the index), the sdist first, then the wheel built from
    the unpacked sdist. A file the sdist lacks fails here."""
    work = tmp_path_factory.mktemp("fresh-build")
    _fresh_clone(work / "clone")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MQTTQUIC_")}
    result = subprocess.run([sys.executable, "-m", "build", "-o", str(work / "dist"),
                             str(work / "clone")], env=dict(base, MQTTQUIC_REQUIRE_EXTENSION="1"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = (work / "dist").glob("*.tar.gz")
    [wheel] = (work / "dist").glob("*.whl")
    with tarfile.open(sdist) as archive:
        # Our own sdist, just built; the "data" filter where this Python has it (3.12+,
        # and security updates of older ones).
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work / "sdist", **safe)
    return {"sdist": sdist, "wheel": wheel, "unpacked": work / "sdist" / f"mqttquic-{VERSION}"}


@packaging
def test_the_wheel_built_from_the_sdist_carries_only_what_runs(dists: dict[str, Path],
                                                               tmp_path: Path) -> None:
    wheel = dists["wheel"]
    assert wheel.name.startswith(f"mqttquic-{VERSION}-cp3") and "linux" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "wheel")
    assert not [n for n in names if n.endswith((".c", ".pyx", ".pxd", "_packets_c.py"))], names
    objects = [n for n in names if n.endswith(".so")]
    assert len(objects) == 2 and f"mqttquic-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "mqttquic/py.typed" in names
    for name in objects:
        symbols = subprocess.run(["nm", str(tmp_path / "wheel" / name)], capture_output=True,
                                 text=True)
        assert "no symbols" in symbols.stderr, f"{name} is not stripped"


@packaging
def test_the_sdist_has_what_every_build_path_needs(dists: dict[str, Path]) -> None:
    unpacked = dists["unpacked"]
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "SECURITY.md", "ARCHITECTURE.md",
                 "tests/conftest.py", "tests/brokers.py", "examples/mqtt_quic_client.py",
                 "examples/mqtt-quic-config.example.json", "mqttquic/_codec.pyx",
                 "mqttquic/_packets_c.pxd", "mqttquic/_packets_c.py", "mqttquic/_codec.c",
                 "mqttquic/_packets_c.c", "mqttquic/py.typed"):
        assert (unpacked / name).is_file(), name
    metadata = (unpacked / "PKG-INFO").read_text()
    assert f"Version: {VERSION}" in metadata
    assert "Project-URL: Source, https://" in metadata


@packaging
def test_twine_finds_the_distributions_ready_to_publish(dists: dict[str, Path]) -> None:
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                             str(dists["sdist"]), str(dists["wheel"])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_readme_renders_on_the_package_index() -> None:
    """PyPI shows the README without the repository around it: no relative links or images."""
    readme = (ROOT / "README.md").read_text()
    relative = re.findall(r"!?\[[^\]]*\]\((?!https?://|#)([^)]+)\)", readme)
    assert relative == []


def _venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    return folder / "bin" / "python"


def _codec_of(python: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTTQUIC_")}
    return subprocess.run([str(python), "-c", "import mqttquic.codec as c; print(c.IMPLEMENTATION)"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@packaging
def test_pip_install_of_the_sdist_with_and_without_a_compiler(dists: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """What a Pi Zero (armv6: no wheel tag covers it), piwheels, musl or a Python newer
    than our wheels do: pip builds the sdist, Cython coming from the index."""
    python = _venv(tmp_path / "venv")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MQTTQUIC_")}
    pip = [str(python), "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check"]
    result = subprocess.run([*pip, str(dists["sdist"])], env=base, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = _codec_of(python, tmp_path)
    assert (loaded.stdout.strip(), loaded.stderr) == ("cython", "")
    # The codec's own tests, from the sdist, against what pip installed.
    tests = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "pytest>=8", "hypothesis>=6"], capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stderr
    shutil.copytree(dists["unpacked"] / "tests", tmp_path / "run" / "tests")
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_varint.py", "tests/test_roundtrip.py"],
                         cwd=tmp_path / "run", env=dict(base, MQTTQUIC_EXPECT_EXTENSION="1"),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    # No compiler (CC=false stands for a machine without gcc): the install still succeeds,
    # with the pure codec, and importing it says so in one warning.
    result = subprocess.run([*pip, "--force-reinstall", "--no-deps", str(dists["sdist"])],
                            env=dict(base, CC="false"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = _codec_of(python, tmp_path)
    assert loaded.stdout.strip() == "python"
    warnings = loaded.stderr.strip().splitlines()
    assert len(warnings) == 1 and "the Cython codec is not built" in warnings[0], loaded.stderr


def _stub_cython(folder: Path) -> Path:
    """A Cython that imports but cannot translate our sources (a broken or too-new one)."""
    (folder / "Cython" / "Build").mkdir(parents=True)
    (folder / "Cython" / "__init__.py").write_text("")
    (folder / "Cython" / "Build" / "__init__.py").write_text(
        "def cythonize(*args, **kwargs):\n    raise RuntimeError('Cython stub: cannot translate')\n")
    return folder


@packaging
def test_a_cython_failure_falls_back_to_the_shipped_c_then_to_the_pure_twin(
        dists: dict[str, Path], tmp_path: Path) -> None:
    stub = str(_stub_cython(tmp_path / "stub"))
    # The sdist ships the generated C: compiled instead.
    unpacked = tmp_path / "sdist"
    shutil.copytree(dists["unpacked"], unpacked)
    built = _build(unpacked, PYTHONPATH=stub)
    assert built.returncode == 0, built.stderr
    assert "Cython failed (Cython stub: cannot translate): compiling the C files" in built.stderr
    assert len(list((unpacked / "mqttquic").glob("*.so"))) == 2
    assert _implementation(unpacked, MQTTQUIC_NO_EXTENSIONS="0") == "cython"
    # Without Cython at all, the same.
    (tmp_path / "none" / "Cython").mkdir(parents=True)
    (tmp_path / "none" / "Cython" / "__init__.py").write_text("raise ImportError('hidden')\n")
    for so in (unpacked / "mqttquic").glob("*.so"):
        so.unlink()
    built = _build(unpacked, PYTHONPATH=str(tmp_path / "none"))
    assert "compiling the C files shipped in the sdist" in built.stdout
    assert len(list((unpacked / "mqttquic").glob("*.so"))) == 2
    # A source tree without generated C: the pure twin, loudly; fatal when required.
    _copy_source(tmp_path / "src")
    built = _build(tmp_path / "src", PYTHONPATH=stub)
    assert built.returncode == 0, built.stderr
    assert "WARNING: the mqttquic Cython codec could not be compiled (Cython failed" in built.stderr
    assert not list((tmp_path / "src" / "mqttquic").glob("*.so"))
    strict = _build(tmp_path / "src", PYTHONPATH=stub, MQTTQUIC_REQUIRE_EXTENSION="1")
    assert strict.returncode != 0
    assert "MQTTQUIC_REQUIRE_EXTENSION is set" in strict.stdout + strict.stderr
