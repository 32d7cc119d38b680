"""Extractors that misbehave the way hostile files make pypdf or python-docx misbehave, for
the worker's child process (which imports this module by name: keep it free of test fixtures).
A file's first word picks the misbehaviour; any other file is extracted for real."""

import os
import signal
import time

from app.files.extract import extract_text


def misbehaving(kind: str, data: bytes, *, max_chars: int) -> str:
    if data.startswith(b"HANG"):
        time.sleep(30)  # long past the test's deadline, yet the test ends should the deadline fail
    elif data.startswith(b"GREEDY"):
        hoard = bytearray(2 * 1024 * 1024 * 1024)
        return str(len(hoard))
    elif data.startswith(b"CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
    return extract_text(kind, data, max_chars=max_chars)
