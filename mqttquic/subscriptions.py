"""The client's subscriptions: the filters it asked for, and the granted ones kept for
restoring after a reconnect whose broker did not keep the session (and, with an
outbox and a persistent session, on disk for a device that reboots)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._aio import within
from .codec import Subscription
from .config import ConnectionConfig
from .connector import Connector

if TYPE_CHECKING:
    from .outbox import Outbox

__all__ = ["SubscribeArg", "Subscriptions"]

SubscribeArg = str | Subscription | tuple[str, int] | Iterable[str | Subscription | tuple[str, int]]


class Subscriptions:
    """Subscribe and unsubscribe through the connector, and remember what was granted."""

    def __init__(self, config: ConnectionConfig, connector: Connector, logger: logging.Logger,
                 outbox: Outbox | None) -> None:
        self.config = config
        self._connector = connector
        self._logger = logger
        # A persistent session's subscriptions outlive the process: in the outbox file.
        self._outbox = outbox if outbox is not None and not config.clean_start else None
        self.granted: dict[str, Subscription] = {}
        if self._outbox is not None:
            for topic_filter, qos in self._outbox.subscriptions():
                self.granted[topic_filter] = Subscription(topic_filter, qos)

    async def subscribe(self, topic: SubscribeArg, qos: int, properties: dict[str, Any] | None,
                        timeout: float | None) -> list[int]:
        subscriptions = parse(topic, qos)

        async def request() -> list[int]:
            return await (await self._connector.ready()).subscribe(subscriptions, properties)

        codes = await within(request(), self.config.operation_timeout if timeout is None
                             else timeout, f"subscribe to {subscriptions[0].topic_filter!r}")
        for subscription, code in zip(subscriptions, codes):
            if code < 0x80:
                self.granted[subscription.topic_filter] = subscription
                if self._outbox is not None:
                    await asyncio.to_thread(self._outbox.save_subscription,
                                            subscription.topic_filter, subscription.qos)
        self._logger.debug("subscribed to %s: SUBACK codes %s",
                           ", ".join(s.topic_filter for s in subscriptions), codes)
        return codes

    async def unsubscribe(self, topic: str | Iterable[str], properties: dict[str, Any] | None,
                          timeout: float | None) -> list[int]:
        filters = [topic] if isinstance(topic, str) else list(topic)
        for topic_filter in filters:
            self.granted.pop(topic_filter, None)
            if self._outbox is not None:
                await asyncio.to_thread(self._outbox.forget_subscription, topic_filter)

        async def request() -> list[int]:
            return await (await self._connector.ready()).unsubscribe(filters, properties)

        return await within(request(), self.config.operation_timeout if timeout is None
                            else timeout, f"unsubscribe from {filters[0]!r}")


def parse(topic: SubscribeArg, qos: int) -> list[Subscription]:
    """``subscribe()``'s first argument as Subscriptions (``qos`` for bare filters)."""
    if isinstance(topic, tuple) and len(topic) == 2 and isinstance(topic[1], int):
        items: list[Any] = [topic]
    elif isinstance(topic, (str, Subscription)):
        items = [topic]
    else:
        items = list(topic)
    out = []
    for item in items:
        if isinstance(item, Subscription):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Subscription(item[0], item[1]))
        else:
            out.append(Subscription(item, qos))
    if not out:
        raise ValueError("subscribe needs at least one topic filter")
    return out
