"""OAuth tokens at rest: encrypted with Fernet under a key derived from a secret.

A database dump then holds no usable Twitch token. The key is derived with
HKDF-SHA256 from a configured secret (a dedicated key, or the app secret), so changing
that secret makes the stored tokens unreadable: the channels simply connect again.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_CONTEXT = b"waddlebot:twitch:oauth-tokens:v1"


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted with the current key."""


class TokenCipher:
    """Encrypt and decrypt token strings with a key derived from ``secret``."""

    def __init__(self, secret: str, *, context: bytes = _CONTEXT):
        if not secret:
            raise ValueError("a non-empty secret is required to encrypt tokens")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(
            secret.encode("utf-8")
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "TokenCipher(**********)"

    def encrypt(self, token: str | None) -> str | None:
        """The encrypted form of a token (None stays None)."""
        if token is None:
            return None
        return self._fernet.encrypt(token.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str | None) -> str | None:
        """The token from its encrypted form; TokenDecryptError if the key does not fit."""
        if stored is None:
            return None
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise TokenDecryptError(
                "stored token cannot be decrypted with the current key"
            ) from None
