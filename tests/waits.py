"""The one way a test waits for something to happen: ``await eventually(...)``.

Every wait has a deadline (a hung test is a failed test), polls at a fixed short
interval, and fails with what it waited for. Waiting for something *not* to happen
is a fixed pause by nature; tests that do it say why the length they chose is enough.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["eventually", "eventually_sync", "holds_within"]


async def eventually(condition: Callable[[], object], within: float = 10.0, *,
                     every: float = 0.02, what: str = "") -> float:
    """Seconds until ``condition()`` was true; AssertionError after ``within`` seconds."""
    started = time.monotonic()
    while not _holds(condition, started + within, within, what):
        await asyncio.sleep(every)
    return time.monotonic() - started


def eventually_sync(condition: Callable[[], object], within: float = 10.0, *,
                    every: float = 0.05, what: str = "") -> float:
    """``eventually`` for a test without an event loop (one that runs processes)."""
    started = time.monotonic()
    while not _holds(condition, started + within, within, what):
        time.sleep(every)
    return time.monotonic() - started


async def holds_within(condition: Callable[[], object], within: float, *,
                       every: float = 0.02) -> bool:
    """Whether ``condition()`` comes true within ``within`` seconds: for the tests where
    either outcome is allowed and counted."""
    try:
        await eventually(condition, within, every=every)
    except AssertionError:
        return False
    return True


def _holds(condition: Callable[[], object], deadline: float, within: float, what: str) -> bool:
    if condition():
        return True
    if time.monotonic() >= deadline:
        raise AssertionError(f"not within {within:g} s: {what or _describe(condition)}")
    return False


def _describe(condition: Callable[[], object]) -> str:
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    return f"{code.co_name} at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"
