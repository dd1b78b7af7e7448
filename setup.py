"""Build the Cython codec; fall back to the pure-Python twin when that fails.

``MQTTQUIC_NO_EXTENSIONS=1`` builds no extension at all. A failed compile (no
compiler, no Python headers) still installs the package, with a loud warning, and
its wheel is tagged pure (``py3-none-any``), never as if it carried the extension;
``MQTTQUIC_REQUIRE_EXTENSION=1`` makes that failure fatal (wheel builds for PyPI).
Without Cython, the C files shipped in the sdist are compiled.

Wheels carry only what runs: the stripped extension, not the C, the .pyx, or the
Cython-compiled copy of ``_packets_py.py`` (``_packets_c.py``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


def _load_env():  # type: ignore[no-untyped-def]
    # The switches live in one place, mqttquic/_env.py; load it by path (the package is
    # not importable before it is built).
    spec = importlib.util.spec_from_file_location("_mqttquic_env", HERE / "mqttquic" / "_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENV = _load_env()

WARNING = """
******************************************************************************
WARNING: the mqttquic Cython codec could not be compiled ({reason}).
mqttquic is installed with its pure-Python codec: everything works, only
slower. Install a C compiler and the Python headers, then reinstall, to get
the fast codec.
******************************************************************************
"""


# Set when an extension could not be built: the wheel is then tagged pure.
FAILED: list[str] = []


def _failed(reason: object) -> None:
    if ENV.flag("MQTTQUIC_REQUIRE_EXTENSION"):
        raise SystemExit(f"MQTTQUIC_REQUIRE_EXTENSION is set and the codec failed to build: {reason}")
    FAILED.append(str(reason))
    sys.stderr.write(WARNING.format(reason=reason))


class OptionalBuildExt(build_ext):
    """build_ext that reports failure instead of failing the install."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # the two extensions side by side, where there are 2 cores
            self.parallel = min(2, os.cpu_count() or 1)

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means: use the twin
            _failed(exc)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            _failed(exc)


class LeanBuildPy(build_py):
    """Leaves out ``_packets_c.py``: it exists to be compiled, the twin is ``_packets_py``."""

    def find_package_modules(self, package, package_dir):  # type: ignore[no-untyped-def]
        return [m for m in super().find_package_modules(package, package_dir)
                if m[1] != "_packets_c"]


class HonestBdistWheel(bdist_wheel):
    """A wheel whose extension failed to build is a pure wheel, and says so in its tag."""

    def get_tag(self):  # type: ignore[no-untyped-def]
        if FAILED or not self.distribution.ext_modules:
            self.root_is_pure = True
            return "py3", "none", "any"
        return super().get_tag()


def _shipped_c(flags: dict) -> list | None:  # type: ignore[type-arg]
    """The extensions from the C files an sdist ships, if they are all there."""
    shipped = [HERE / "mqttquic" / f"{name}.c" for name in ("_packets_c", "_codec")]
    if not all(path.exists() for path in shipped):
        return None
    return [Extension(f"mqttquic.{path.stem}", [str(path.relative_to(HERE))], **flags)
            for path in shipped]


def _extensions() -> list:  # type: ignore[type-arg]
    """The codec's extensions: cythonized from the sources, else the C an sdist ships,
    else none (the pure twin). Every failure on the way falls back, loudly; with
    ``MQTTQUIC_REQUIRE_EXTENSION=1`` it is fatal instead."""
    if ENV.no_extensions():
        print("MQTTQUIC_NO_EXTENSIONS is set: building no extension, pure-Python codec only")
        return []
    # Smaller shared objects: no debug information, symbols stripped (GNU toolchains).
    gnu = sys.platform.startswith("linux") and not ENV.flag("MQTTQUIC_DEBUG_BUILD")
    flags = {"extra_compile_args": ["-g0"], "extra_link_args": ["-s"]} if gnu else {}
    try:
        from Cython.Build import cythonize
    except ImportError:
        # pip install --no-build-isolation, or an offline machine without Cython.
        shipped = _shipped_c(flags)
        if shipped is not None:
            print("Cython is not installed: compiling the C files shipped in the sdist")
            return shipped
        _failed("Cython is not installed and there is no generated C to compile")
        return []
    extensions = [Extension("mqttquic._packets_c", ["mqttquic/_packets_c.py"], **flags),
                  Extension("mqttquic._codec", ["mqttquic/_codec.pyx"], **flags)]
    try:
        return list(cythonize(extensions, compiler_directives={"language_level": "3"}, quiet=True))
    except Exception as exc:  # noqa: BLE001 - a Cython that cannot translate our sources
        shipped = _shipped_c(flags)
        if shipped is not None and not ENV.flag("MQTTQUIC_REQUIRE_EXTENSION"):
            sys.stderr.write(f"Cython failed ({exc}): compiling the C files shipped in the sdist\n")
            return shipped
        _failed(f"Cython failed: {exc}")
        return []


setup(ext_modules=_extensions(),
      cmdclass={"build_ext": OptionalBuildExt, "build_py": LeanBuildPy,
                "bdist_wheel": HonestBdistWheel})
