"""The keyring that encrypts secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

``MultiFernet`` gives key rotation for free: the first key encrypts, every key
decrypts, so an operator adds a new key in front, runs ``oauth2_rotate_keys`` and
later drops the old one.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .conf import app_settings, on_reload
from .exceptions import ConfigurationError

GENERATE_KEY_HINT = (
    'python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def parse_keys(raw: object) -> list[Fernet]:
    """Turn the ENCRYPTION_KEYS setting into Fernet objects, or say what is wrong."""
    if isinstance(raw, str | bytes):
        # A blank string (an unset environment variable) means "no key", not a
        # malformed one: the message should say what to add.
        raw = [raw] if raw.strip() else []
    if not isinstance(raw, list | tuple) or not raw:
        raise ConfigurationError(
            "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] is empty: tokens and client secrets "
            "are encrypted at rest and need at least one key. Generate one with "
            f"{GENERATE_KEY_HINT} and add it to the list."
        )
    fernets = []
    for position, key in enumerate(raw, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"OAUTH2_INTEGRATOR['ENCRYPTION_KEYS'] key #{position} is not a valid "
                "Fernet key (32 bytes, urlsafe base64). Generate one with "
                f"{GENERATE_KEY_HINT}."
            ) from exc
    return fernets


@functools.cache
def _keyring() -> tuple[MultiFernet, tuple[Fernet, ...]]:
    fernets = parse_keys(app_settings.ENCRYPTION_KEYS)
    return MultiFernet(fernets), tuple(fernets)


on_reload(_keyring.cache_clear)


_NO_KEY_OPENS = (
    "A stored secret cannot be decrypted with any key in "
    "OAUTH2_INTEGRATOR['ENCRYPTION_KEYS']. Was a key removed before "
    "`manage.py oauth2_rotate_keys` ran?"
)


def encrypt(plaintext: str) -> str:
    return encrypt_bytes(plaintext.encode())


def decrypt(ciphertext: str) -> str:
    try:
        return _keyring()[0].decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise ConfigurationError(_NO_KEY_OPENS) from exc


def is_current(ciphertext: str) -> bool:
    """True when the first (encrypting) key already opens this value."""
    try:
        _keyring()[1][0].decrypt(ciphertext.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def open_for_rotation(ciphertext: str) -> bytes | None:
    """The plain bytes of a value not under the first key yet; None when it is.

    Each key is tried once, in order (``is_current`` and then ``decrypt`` would
    try the first key twice: a third of a rotation's work).
    """
    try:
        token = ciphertext.encode("ascii")
    except UnicodeEncodeError:
        token = b""  # no key opens it
    for position, fernet in enumerate(_keyring()[1]):
        try:
            plain = fernet.decrypt(token)
        except InvalidToken:
            continue
        return None if position == 0 else plain
    raise ConfigurationError(_NO_KEY_OPENS)


def encrypt_bytes(plain: bytes) -> str:
    """``encrypt`` for bytes already encoded (rotation writes back what it opened,
    byte for byte); the first key encrypts."""
    return _keyring()[1][0].encrypt(plain).decode("ascii")
