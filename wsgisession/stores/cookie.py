"""CookieStore: the whole session in a signed, optionally encrypted, cookie.

Nothing is kept on the server.  The cookie carries the session id, its
creation and last-refresh times, the data and the flash keys, signed with
HMAC-SHA256 through itsdangerous, so a client can read (unless encrypted) but
never change its session, its expiry included.

The cookie value is ``<flag><body>.<signature>``, all URL-safe base64 text:

====== ==========================================================
flag   body
====== ==========================================================
``j``  the payload, JSON
``z``  the payload, JSON compressed with zlib
``e``  ``nonce + AES-GCM(flag byte j or z + JSON or zlib(JSON))``
====== ==========================================================

The payload is the JSON list ``[id, created, refreshed, data, flash,
persistent]`` (cookies written by 0.1.0 lack ``persistent``).  The signature
covers the flag and the body; it is the one itsdangerous's
``Signer(secret_key, salt=salt, key_derivation="hmac",
digest_method=hashlib.sha256)`` makes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import zlib
from typing import TYPE_CHECKING, Any, List, Optional, Pattern, Sequence, Tuple, Union

from itsdangerous import BadData, Signer, base64_decode, base64_encode

from ..errors import SessionError
from ..serialization import dumps, loads
from ..store import ChangeOutcome, SessionChanges, SessionInfo, SessionRecord, Store, WSGIEnviron, is_empty

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["CookieStore", "MIN_SECRET_KEY_BYTES", "MAX_COOKIE_CHARS", "COMPRESS_MIN_BYTES"]

log = logging.getLogger("wsgisession")

# Enum members are looked up once: on CPython 3.11 that lookup costs more
# than the comparison it serves.
_APPLIED, _EMPTIED, _GONE = ChangeOutcome.APPLIED, ChangeOutcome.EMPTIED, ChangeOutcome.GONE

#: The shortest secret key accepted: 32 bytes (256 bits), the size of the
#: HMAC-SHA256 output.  ``secrets.token_urlsafe(32)`` makes a good one.
MIN_SECRET_KEY_BYTES = 32

#: Cookie values longer than this are rejected unread: browsers never send
#: back a cookie larger than they keep, so such a value was not made by us.
#: It also bounds what decompression can produce (zlib expands at most about
#: 1000 to 1), so a cookie can not be a decompression bomb.
MAX_COOKIE_CHARS = 4096

_JSON = "j"
_COMPRESSED = "z"
_ENCRYPTED = "e"

_AES_KEY_SIZES = (16, 24, 32)
_NONCE_BYTES = 12  # 96 bits, the size AES-GCM is specified for

#: Payloads shorter than this many bytes are never compressed.
# Compressing costs more than the rest of a cookie write together, and a
# payload this small is far from the size limit, so it is left as it is.
COMPRESS_MIN_BYTES = 512

# zlib.compress() sets up a 256 KiB state for every call; a 4 KiB window
# covers every payload that can fit in a cookie and is set up much faster.
_ZLIB_LEVEL = 6
_ZLIB_WINDOW_BITS = 12
_ZLIB_MEMORY_LEVEL = 4

_NUMBER_TYPES = (int, float)

_NO_INDEX = (
    "CookieStore keeps each session in the browser's cookie: the server can neither list a user's sessions "
    "nor end them.  Use a server-side store for that, or keep a generation number per user, store it in "
    "the session at login and check it on every request (raising it ends every session of that user)."
)

SecretKey = Union[str, bytes]
SecretKeys = Union[SecretKey, Sequence[SecretKey]]
EncryptionKeys = Union[bytes, Sequence[bytes]]


class CookieStore(Store):
    """A store that keeps each session in its cookie, signed and optionally encrypted.

    ``secret_key`` (str or bytes of at least 32 bytes, or a list of them with
    the newest last) signs; every key in the list verifies, so keys rotate
    without logging anyone out.  ``encryption_key`` (16, 24 or 32 random
    bytes, or a list, newest last) also encrypts the payload with AES-GCM and
    needs the ``crypto`` extra.  ``compress`` says whether payloads of
    ``COMPRESS_MIN_BYTES`` or more are compressed when that makes them
    shorter; by default they are unless encrypted (compressing before
    encrypting lets the cookie's length reveal its content).  A cookie session
    can not be revoked on the server: see the README.
    """

    client_side = True

    def __init__(
        self,
        secret_key: SecretKeys,
        *,
        salt: Union[str, bytes] = "wsgisession.cookie",
        encryption_key: Optional[EncryptionKeys] = None,
        compress: Optional[bool] = None,
    ) -> None:
        salt_bytes = salt.encode("utf-8") if isinstance(salt, str) else salt
        if not isinstance(salt_bytes, bytes):
            raise TypeError(f"salt must be str or bytes, not {type(salt).__name__}")
        secret_keys = _secret_keys(secret_key)
        # itsdangerous derives the signing key from the secret and the salt on
        # every call; deriving once here keeps that hash off each request while
        # producing exactly the signatures of key_derivation="hmac".
        derived = [
            Signer(key, salt=salt_bytes, key_derivation="hmac", digest_method=hashlib.sha256).derive_key()
            for key in secret_keys
        ]
        self._signer = Signer(derived, salt=salt_bytes, key_derivation="none", digest_method=hashlib.sha256)
        self._associated_data = salt_bytes
        self._ciphers: List[AESGCM] = []
        if encryption_key is not None:
            aes_gcm = _import_aes_gcm()
            # Newest first: new cookies are encrypted with it, so most decrypt on the first try.
            self._ciphers = [aes_gcm(key) for key in reversed(_encryption_keys(encryption_key))]
        self.encrypted = bool(self._ciphers)
        self.compress = (not self.encrypted) if compress is None else bool(compress)
        self._shape = _cookie_shape(_ENCRYPTED if self.encrypted else _JSON + _COMPRESSED)

    # -- the four basic methods: nothing is stored on the server -----------------

    def get_session(self, id: str, environ: WSGIEnviron) -> Optional[SessionRecord]:
        """Always None: the session lives in the cookie (see :meth:`load_session`)."""
        return None

    def create_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Nothing to do: :meth:`cookie_value` puts the record in the cookie."""

    def persist_session(self, data: SessionRecord, id: str, environ: WSGIEnviron) -> None:
        """Nothing to do: :meth:`cookie_value` puts the record in the cookie."""

    def delete_session(self, id: str, environ: WSGIEnviron) -> None:
        """Nothing to do: the middleware expires the cookie, the only copy this store knows of."""

    def apply_changes(self, id: str, changes: SessionChanges, environ: WSGIEnviron) -> ChangeOutcome:
        """Nothing to store: the new cookie carries the changes.  ``EMPTIED`` when no data is left."""
        if changes.set or changes.restore:
            return _APPLIED  # (a failed request sets no cookie: the browser keeps its values)
        return _EMPTIED if is_empty(self._record(changes)) else _APPLIED

    def consume_flash(self, id: str, key: str, environ: WSGIEnviron) -> bool:
        """True: the new cookie leaves the value out (a copied older cookie still holds it)."""
        return True

    # -- what a cookie can not do -----------------------------------------------------

    def sessions_of(self, owner: str, current: Any = None) -> List[SessionInfo]:
        """Refused: a session kept in the browser's cookie can not be listed on the server."""
        raise SessionError(_NO_INDEX)

    def end_session(self, owner: str, handle: str) -> bool:
        """Refused: a session kept in the browser's cookie can not be ended on the server."""
        raise SessionError(_NO_INDEX)

    def end_sessions(self, owner: str, keep: Any = None) -> int:
        """Refused: a session kept in the browser's cookie can not be ended on the server."""
        raise SessionError(_NO_INDEX)

    # -- the cookie ----------------------------------------------------------------

    def cookie_value(self, id: str, changes: SessionChanges) -> str:
        """The signed (and, with an encryption key, encrypted) cookie value holding the whole record.

        ``expires`` is left out: the middleware computes it from the signed
        ``created`` and ``refreshed`` times.
        """
        record = self._record(changes)
        payload: List[Any] = [id, record["created"], record["refreshed"], record["data"], record["flash"]]
        owner = record.get("owner")
        if "persistent" in record or owner is not None:
            payload.append(record.get("persistent"))
        if owner is not None:
            payload += [owner, record.get("details") or {}]
        body = dumps(payload).encode("utf-8")
        flag = _JSON
        if self.compress and len(body) >= COMPRESS_MIN_BYTES:
            compressor = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, _ZLIB_WINDOW_BITS, _ZLIB_MEMORY_LEVEL)
            compressed = compressor.compress(body) + compressor.flush()
            if len(compressed) < len(body):
                body, flag = compressed, _COMPRESSED
        if self._ciphers:
            nonce = os.urandom(_NONCE_BYTES)
            plaintext = flag.encode("ascii") + body
            body = nonce + self._ciphers[0].encrypt(nonce, plaintext, self._associated_data)
            flag = _ENCRYPTED
        return self._signer.sign(flag.encode("ascii") + base64_encode(body)).decode("ascii")

    @staticmethod
    def _record(changes: SessionChanges) -> SessionRecord:
        # The session the changes leave: the cookie's record with them
        # applied, without the flash values this request took.
        assert changes.base is not None
        record = changes.apply_to(changes.base)
        if changes.claimed:
            for key in changes.claimed:
                record["data"].pop(key, None)
            record["flash"] = [key for key in record["flash"] if key not in changes.claimed]
        return record

    def load_session(self, cookie_value: str, environ: WSGIEnviron) -> Optional[Tuple[str, SessionRecord]]:
        """``(id, record)`` from a cookie this store made with one of its keys, else None.

        Anything else (tampered, truncated, signed with a foreign or retired
        key, oversized, not ASCII, malformed) gives None and a debug log: a
        fresh session, never an error.
        """
        # Cheap checks first, so junk costs no hashing.
        if len(cookie_value) > MAX_COOKIE_CHARS:
            log.debug("rejected a session cookie of %d characters (limit %d)", len(cookie_value), MAX_COOKIE_CHARS)
            return None
        if self._shape.fullmatch(cookie_value) is None:
            log.debug("rejected a session cookie that is not shaped like one of this store's cookies")
            return None
        # The shape check leaves exactly one separator, before the signature.
        signed, signature = cookie_value.encode("ascii").rsplit(b".", 1)
        if not self._signer.verify_signature(signed, signature):
            log.debug("rejected a session cookie whose signature does not verify")
            return None
        flag = cookie_value[0]
        try:
            body = base64_decode(signed[1:])
            if flag == _ENCRYPTED:
                plaintext = self._decrypt(body)
                if plaintext is None:
                    log.debug("rejected a session cookie that no encryption key decrypts")
                    return None
                flag, body = plaintext[:1].decode("ascii"), plaintext[1:]
            if flag == _COMPRESSED:
                body = zlib.decompress(body)
            elif flag != _JSON:
                log.debug("rejected a session cookie with an unknown inner format flag %r", flag)
                return None
            payload = loads(body)
        except (BadData, zlib.error, ValueError, RecursionError) as exc:
            log.debug("rejected a signed session cookie that does not decode: %s", exc)
            return None
        loaded = self._record_from(payload)
        if loaded is None:
            log.debug("rejected a signed session cookie whose payload is malformed")
        return loaded

    def _decrypt(self, body: bytes) -> Optional[bytes]:
        # The caller checked that this store has encryption keys.
        from cryptography.exceptions import InvalidTag

        nonce, ciphertext = body[:_NONCE_BYTES], body[_NONCE_BYTES:]
        if len(nonce) < _NONCE_BYTES:
            return None
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, ciphertext, self._associated_data)
            except InvalidTag:
                continue
        return None

    def _record_from(self, payload: object) -> Optional[Tuple[str, SessionRecord]]:
        # The signature says we wrote this payload; the checks keep a bug or a
        # leaked key from turning into a server error.
        if type(payload) is not list or len(payload) not in (5, 6, 8):
            return None
        id, created, refreshed, data, flash = payload[:5]
        persistent = payload[5] if len(payload) >= 6 else None
        if persistent is not None and type(persistent) is not bool:
            return None
        owner, details = payload[6:8] if len(payload) == 8 else (None, {})
        if not (owner is None or type(owner) is str) or type(details) is not dict:
            return None
        if type(id) is not str or not self.is_valid_id(id):
            return None
        if type(created) not in _NUMBER_TYPES or type(refreshed) not in _NUMBER_TYPES:
            return None
        try:
            created, refreshed = float(created), float(refreshed)
        except OverflowError:  # an integer too large for a float
            return None
        if not (math.isfinite(created) and math.isfinite(refreshed)):
            return None
        if type(data) is not dict or type(flash) is not list:
            return None
        if flash and any(type(key) is not str for key in flash):
            return None
        record: SessionRecord = {
            "data": data,
            "flash": flash,
            "created": created,
            "refreshed": refreshed,
            "expires": None,
        }
        if persistent is not None:
            record["persistent"] = persistent
        if owner is not None:
            record["owner"] = owner
            record["details"] = details
        return id, record


def _cookie_shape(flags: str) -> Pattern[str]:
    """The exact shape of the cookies a store makes: a flag, base64 text, a dot, the signature.

    The base64 decoder skips characters outside its alphabet and ignores the
    unused low bits of the last character, so without this check a cookie
    could be altered and still verify.  A SHA-256 signature is 43 characters
    whose last one has its two low bits zero.
    """
    return re.compile(f"[{flags}][A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{{42}}[AEIMQUYcgkosw048]")


def _secret_keys(secret_key: SecretKeys) -> List[bytes]:
    """The secret keys as bytes, oldest first; ``ValueError`` for none or a short one."""
    keys: Sequence[SecretKey] = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
    if not keys:
        raise ValueError(f"CookieStore needs a secret_key of at least {MIN_SECRET_KEY_BYTES} bytes, not an empty list")
    result = []
    for key in keys:
        if isinstance(key, str):
            key_bytes = key.encode("utf-8")
        elif isinstance(key, bytes):
            key_bytes = key
        else:
            raise TypeError(f"a secret key must be str or bytes, not {type(key).__name__}")
        if len(key_bytes) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"a CookieStore secret key must be at least {MIN_SECRET_KEY_BYTES} bytes, "
                f"got {len(key_bytes)}; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        result.append(key_bytes)
    return result


def _encryption_keys(encryption_key: EncryptionKeys) -> List[bytes]:
    """The AES keys, oldest first; ``ValueError`` for none or one of the wrong size."""
    keys: Sequence[bytes] = [encryption_key] if isinstance(encryption_key, bytes) else list(encryption_key)
    if not keys:
        raise ValueError("encryption_key is an empty list; pass None for no encryption")
    for key in keys:
        if not isinstance(key, bytes):
            raise TypeError(f"an encryption key must be bytes (use os.urandom(32)), not {type(key).__name__}")
        if len(key) not in _AES_KEY_SIZES:
            raise ValueError(f"an encryption key must be 16, 24 or 32 bytes for AES, got {len(key)}")
    return list(keys)


def _import_aes_gcm() -> type[AESGCM]:
    """AES-GCM from ``cryptography``, imported only by stores that encrypt."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            "CookieStore(encryption_key=...) needs the cryptography package: pip install 'wsgisession[crypto]'"
        ) from exc
    return AESGCM
