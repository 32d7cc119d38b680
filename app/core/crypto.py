"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with the key from settings.

Used for whatever a user hands us that unlocks something elsewhere: MCP client headers and
custom variables, LLM provider API keys. Responses never carry the plain values: ``mask``
shows that a value is set and its last characters only.
"""

from functools import lru_cache
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from app.core.config import Settings

MASK = "****"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("Secret cannot be decrypted with the configured ENCRYPTION_KEY") from exc

    def encrypt_json(self, value: Any) -> str:
        return self.encrypt(orjson.dumps(value).decode())

    def decrypt_json(self, token: str | None, default: Any = None) -> Any:
        return default if token is None else orjson.loads(self.decrypt(token))


@lru_cache(maxsize=8)
def _box(key: bytes) -> SecretBox:
    return SecretBox(key)


def secret_box(settings: Settings) -> SecretBox:
    return _box(settings.encryption_key_value())


def mask(value: str | None) -> str | None:
    """``sk-...abcd`` -> ``****abcd``: enough to recognise a value, never enough to use it."""
    if value is None:
        return None
    return MASK + value[-4:] if len(value) >= 12 else MASK


def mask_values(values: dict[str, str]) -> dict[str, str]:
    return dict.fromkeys(values, MASK)
