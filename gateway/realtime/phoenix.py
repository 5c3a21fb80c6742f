"""Phoenix channel frames as Supabase Realtime clients send and read them.

`vsn=2.0.0` (supabase-js's default): text frames are JSON arrays
`[join_ref, ref, topic, event, payload]`; `vsn=1.0.0`: JSON objects with those
keys. supabase-js sends a client broadcast as a binary frame instead: a kind
byte (3), the lengths of join_ref, ref, topic, event and metadata, an encoding
byte, then those fields and the payload."""

from __future__ import annotations

from typing import Any

import orjson

VERSIONS = ("1.0.0", "2.0.0")
USER_BROADCAST_PUSH = 3  # the kind byte of a binary client broadcast

# join_ref, ref, topic, event, payload
Frame = tuple[str | None, str | None, str, str, Any]


def encode(vsn: str, frame: Frame) -> str:
    join_ref, ref, topic, event, payload = frame
    if vsn == "2.0.0":
        return orjson.dumps([join_ref, ref, topic, event, payload]).decode()
    return orjson.dumps({"join_ref": join_ref, "ref": ref, "topic": topic,
                         "event": event, "payload": payload}).decode()


def decode(vsn: str, text: str) -> Frame | None:
    """The frame, its payload an object ({} when it is not one); None when the
    text is not a Phoenix message (nothing to answer to)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if vsn == "2.0.0":
        if not isinstance(value, list) or len(value) != 5:
            return None
        join_ref, ref, topic, event, payload = value
    else:
        if not isinstance(value, dict):
            return None
        join_ref, ref = value.get("join_ref"), value.get("ref")
        topic, event, payload = value.get("topic"), value.get("event"), value.get("payload")
    if not isinstance(topic, str) or not isinstance(event, str):
        return None
    refs = [r if isinstance(r, str) or r is None else str(r) for r in (join_ref, ref)]
    return refs[0], refs[1], topic, event, payload if isinstance(payload, dict) else {}


def binary_broadcast(data: bytes) -> Frame | None:
    """A binary client broadcast as a frame (join_ref, ref and topic, so that it
    can be answered), or None for any other binary data."""
    if len(data) < 7 or data[0] != USER_BROADCAST_PUSH:
        return None
    start = 7
    fields = []
    for length in data[1:4]:
        fields.append(data[start:start + length].decode("utf-8", "replace"))
        start += length
    join_ref, ref, topic = fields
    return join_ref or None, ref or None, topic, "broadcast", {}
