"""Topic name and topic filter rules (section 4.7)."""

from __future__ import annotations

from .errors import MalformedPacket

__all__ = ["validate_topic_name", "validate_topic_filter", "topic_matches"]


def validate_topic_name(topic: str, allow_empty: bool = False) -> None:
    """Raise MalformedPacket unless ``topic`` may be used in a PUBLISH."""
    if not topic and not allow_empty:
        raise MalformedPacket("empty topic name [MQTT-4.7.3-1]")
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"wildcard in topic name {topic!r} [MQTT-3.3.2-2]")
    if "\x00" in topic:
        raise MalformedPacket("U+0000 in topic name [MQTT-1.5.4-2]")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise MalformedPacket unless ``topic_filter`` is a valid subscription filter."""
    if not topic_filter:
        raise MalformedPacket("empty topic filter [MQTT-4.7.3-1]")
    if "\x00" in topic_filter:
        raise MalformedPacket("U+0000 in topic filter [MQTT-1.5.4-2]")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise MalformedPacket(
                f"'#' must be a whole last level in {topic_filter!r} [MQTT-4.7.1-2]"
            )
        if "+" in level and level != "+":
            raise MalformedPacket(
                f"'+' must occupy a whole level in {topic_filter!r} [MQTT-4.7.1-3]"
            )


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` (``$`` topics need a literal first level)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        topic_filter = parts[2] if len(parts) == 3 else ""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
