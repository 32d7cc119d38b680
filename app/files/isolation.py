"""Text extraction in a separate process, so that no file can hang or exhaust the worker.

pypdf and python-docx run uploaded bytes through a lot of parsing code: a crafted file can loop
for minutes or inflate to gigabytes. Extraction therefore runs in a helper process
(``app.files.extractor_process``) with an address-space ceiling, and a helper that misses its
deadline is killed. Helpers are long-lived (importing pypdf takes about half a second, more than
extracting a typical file) and are replaced after a kill, a crash, running out of memory or
``_EXTRACTIONS_PER_HELPER`` files. The worker's event loop only waits meanwhile: the blocking
pipe I/O runs in a thread.
"""

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from app.core.config import Settings
from app.files.extract import ExtractionFailed, extract_text

# (kind, data, *, max_chars) -> text. A module-level function: the helper imports it by name.
Extractor = Callable[..., str]

_EXTRACTIONS_PER_HELPER = 100
_FRAME_HEADER = struct.Struct("!Q")


class ExtractionCrashed(Exception):
    """The extraction failed in a way that is no fault of the file's that we know of."""


@dataclass(frozen=True)
class ExtractionLimits:
    timeout_seconds: float
    max_memory_bytes: int
    max_chars: int

    @classmethod
    def of(cls, settings: Settings) -> "ExtractionLimits":
        return cls(
            timeout_seconds=settings.file_extract_timeout_seconds,
            max_memory_bytes=settings.file_extract_max_memory_bytes,
            max_chars=settings.file_max_text_chars,
        )


async def extract_in_child(
    kind: str, data: bytes, limits: ExtractionLimits, *, extractor: Extractor = extract_text
) -> str:
    """The file's text, or ``ExtractionFailed`` with a reason for a person (the extractor's own,
    or that it took too long or needed too much memory); ``ExtractionCrashed`` otherwise."""
    request = pickle.dumps(
        (
            f"{extractor.__module__}:{extractor.__qualname__}",
            kind,
            data,
            limits.max_chars,
            limits.timeout_seconds,
        ),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    helper = _idle_helpers.take(limits.max_memory_bytes)
    healthy = False
    try:
        with anyio.move_on_after(limits.timeout_seconds) as waiting:
            reply = await anyio.to_thread.run_sync(helper.exchange, request, abandon_on_cancel=True)
        if waiting.cancelled_caught:
            raise ExtractionFailed(
                f"Processing the file took too long (more than {limits.timeout_seconds:g} seconds); "
                "split it or simplify it"
            )
        if reply is None:  # killed (by the kernel's OOM killer, say) or crashed in C code
            raise ExtractionCrashed(f"the extraction process died (exit code {helper.exit_code()})")
        outcome, value = reply
        healthy = outcome in ("ok", "failed")
        if outcome == "ok":
            text: str = value
            return text
        if outcome in ("failed", "out of memory"):
            raise ExtractionFailed(value)
        raise ExtractionCrashed(f"the extractor raised in its process:\n{value}")
    finally:
        if healthy:
            _idle_helpers.put_back(helper)
        else:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(helper.kill)


class _Helper:
    """One extraction process, spoken to in length-prefixed pickles over its stdin and stdout."""

    def __init__(self, max_memory_bytes: int) -> None:
        self.max_memory_bytes = max_memory_bytes
        self.extractions = 0
        self._process = subprocess.Popen(
            [sys.executable, "-m", "app.files.extractor_process", str(max_memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # The same import path as this process: tests hand it extractors of their own.
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )

    def exchange(self, request: bytes) -> tuple[str, Any] | None:
        """Send one request and wait for its reply; None when the process ended instead."""
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            return None
        self.extractions += 1
        try:
            stdin.write(_FRAME_HEADER.pack(len(request)) + request)
            stdin.flush()
            header = stdout.read(_FRAME_HEADER.size)
            if len(header) < _FRAME_HEADER.size:
                return None
            (size,) = _FRAME_HEADER.unpack(header)
            body = stdout.read(size)
        except (OSError, ValueError):  # the process died, or was killed and its pipes closed
            return None
        if len(body) < size:
            return None
        reply: tuple[str, Any] = pickle.loads(body)  # our own helper's reply
        return reply

    def usable(self, max_memory_bytes: int) -> bool:
        return (
            self._process.poll() is None
            and self.max_memory_bytes == max_memory_bytes
            and self.extractions < _EXTRACTIONS_PER_HELPER
        )

    def exit_code(self) -> int | None:
        return self._process.poll()

    def kill(self) -> None:
        """End the process (whatever it is doing) and reap it."""
        self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()


class _IdleHelpers:
    """Helpers waiting for work: one per extraction running at the same time, at most."""

    def __init__(self) -> None:
        self._helpers: list[_Helper] = []

    def take(self, max_memory_bytes: int) -> _Helper:
        while self._helpers:
            helper = self._helpers.pop()
            if helper.usable(max_memory_bytes):
                return helper
            helper.kill()
        return _Helper(max_memory_bytes)

    def put_back(self, helper: _Helper) -> None:
        if helper.usable(helper.max_memory_bytes):
            self._helpers.append(helper)
        else:
            helper.kill()


_idle_helpers = _IdleHelpers()
