"""Fixtures shared by the test suite.

``codec`` runs a test once per codec twin (ids ``[cython]`` and ``[python]``),
like multidict's tests do. Under ``MQTTQUIC_NO_EXTENSIONS=1`` only the pure
twin is imported, so that run proves the package works without the extension.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from mqttquic._env import no_extensions


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
