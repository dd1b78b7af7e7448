"""Topic names, filters and matching (section 4.7)."""

from __future__ import annotations

import pytest

from mqttquic.errors import MalformedPacket
from mqttquic.topics import topic_matches, validate_topic_filter, validate_topic_name


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/#", "sport", True),
    ("#", "a/b/c", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/uptime", False),
    ("+/uptime", "$SYS/uptime", False),
    ("$SYS/#", "$SYS/uptime", True),
    ("$share/group/a/+", "a/b", True),
    ("a/b", "a/b/c", False),
])
def test_matching_follows_the_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a+/b", "x\x00"])
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(MalformedPacket):
        validate_topic_filter(bad)


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", "a\x00"])
def test_invalid_names(bad: str) -> None:
    with pytest.raises(MalformedPacket):
        validate_topic_name(bad)
