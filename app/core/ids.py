"""UUIDv7 (RFC 9562): time-ordered ids, so outbox and event ids sort by creation time.

Monotonic within a process (RFC 9562, section 6.2, method 2): when the clock has not moved on
since the previous id, the 74 random bits of the previous id are incremented instead of drawn
again. Events recorded in one transaction share their ``occurred_at``, so their ids are what
keeps the order in which they were recorded.
"""

import os
import threading
import time
import uuid

_RANDOM_BITS = 74
_lock = threading.Lock()
_last = 0


def uuid7() -> uuid.UUID:
    global _last
    with _lock:
        unix_ms = time.time_ns() // 1_000_000
        random_part = int.from_bytes(os.urandom(10), "big") & ((1 << _RANDOM_BITS) - 1)
        candidate = ((unix_ms & ((1 << 48) - 1)) << _RANDOM_BITS) | random_part
        if candidate <= _last:
            candidate = _last + 1
        _last = candidate
    unix_ms, random_part = candidate >> _RANDOM_BITS, candidate & ((1 << _RANDOM_BITS) - 1)
    value = unix_ms << 80
    value |= 0x7 << 76  # version
    value |= (random_part >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= random_part & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)
