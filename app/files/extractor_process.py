"""The extraction helper process (``python -m app.files.extractor_process MAX_MEMORY_BYTES``),
started and spoken to by ``app.files.isolation``: it reads requests from stdin and writes a reply
to each on stdout, in length-prefixed pickles, until stdin closes.

A request is ``("module:function", kind, data, max_chars, seconds)``; its reply ``(outcome,
value)``:
``("ok", text)``, ``("failed", reason)`` for a file that cannot be turned into text,
``("out of memory", reason)`` or ``("error", traceback)``. After the last two the process exits:
what state a failing library left behind is not worth finding out. The parent kills a request
that outlives ``seconds``; should the parent itself be gone, an alarm a little later ends this
process (SIGALRM's default action), so no orphan spins on a hostile file.
"""

import importlib
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from typing import Any, BinaryIO

from app.files.extract import ExtractionFailed

_FRAME_HEADER = struct.Struct("!Q")
_ORPHAN_GRACE_SECONDS = 10


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    while header := requests.read(_FRAME_HEADER.size):
        (size,) = _FRAME_HEADER.unpack(header)
        extractor_name, kind, data, max_chars, seconds = pickle.loads(requests.read(size))
        signal.setitimer(signal.ITIMER_REAL, seconds + _ORPHAN_GRACE_SECONDS)
        reply: tuple[str, Any]
        try:
            module, _, name = extractor_name.partition(":")
            extractor = getattr(importlib.import_module(module), name)
            reply = ("ok", extractor(kind, data, max_chars=max_chars))
        except ExtractionFailed as exc:
            reply = ("failed", str(exc))
        except MemoryError:
            reply = ("out of memory", "The file needs too much memory to process; split it or simplify it")
        except Exception:
            reply = ("error", traceback.format_exc(limit=20))
        signal.setitimer(signal.ITIMER_REAL, 0)
        del data
        body = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(_FRAME_HEADER.pack(len(body)) + body)
        replies.flush()
        if reply[0] not in ("ok", "failed"):
            return


def main() -> None:
    max_memory_bytes = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (max_memory_bytes, max_memory_bytes))
    # Replies own the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with replies:
        serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
