"""Ed25519 signatures for audit records and day manifests, and the Merkle root over one day.

Why Ed25519 and not HMAC-SHA256: an HMAC key that lets an auditor *check* a record also lets the
auditor (or anyone who copies it from the auditor) *forge* one. With Ed25519 the workers hold the
private key (TENDERSCAN_AUDIT_SIGNING_KEY, a Secret) and the public key is published
(TENDERSCAN_AUDIT_PUBLIC_KEYS, docs/AUDIT.md): verifying needs nothing secret, forging needs the
worker's key. Signatures are 64 bytes; signing took about 0.2 ms a record on a shared 2-core machine.

What is signed (never the JSON itself, so the audit record stays byte-identical to the Redis verdict):
    record    DOMAIN "record" <S3 key> <sha256 of the record bytes>   -> S3 metadata signature / key-id
    manifest  DOMAIN "manifest" <canonical JSON of the manifest without its signature>
Binding the S3 key means a genuine record copied to another tenant or day no longer verifies.

Merkle tree (RFC 6962 style, so a leaf can never pass for a node):
    leaf  = sha256(0x00 || scan_id ":" sha256_hex)         entries sorted by scan_id
    node  = sha256(0x01 || left || right); an odd node is carried up unchanged
    root of no entries = sha256("")
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from workers.core.settings import parse_key_hex

DOMAIN = b"tenderscan-audit-v1"
SIGNATURE_META = "signature"  # S3 metadata (x-amz-meta-signature): base64 Ed25519 signature
KEY_ID_META = "key-id"  # x-amz-meta-key-id: which public key checks it (key_id())
SHA256_META = "sha256"  # x-amz-meta-sha256: sha256 of the object bytes (a convenience; the signature covers it)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id(public_hex: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its sha256."""
    return sha256_hex(bytes.fromhex(public_hex))[:16]


def record_message(s3_key: str, data: bytes) -> bytes:
    return b"\n".join([DOMAIN, b"record", s3_key.encode(), sha256_hex(data).encode()])


def manifest_message(body: bytes) -> bytes:
    return b"\n".join([DOMAIN, b"manifest", body])


@dataclass(frozen=True)
class Signer:
    """Holds the private key; lives in workers (and in `tenderscan audit seal`)."""

    seed_hex: str

    @cached_property
    def _private(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.seed_hex))

    @cached_property
    def public_hex(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    @cached_property
    def key_id(self) -> str:
        return key_id(self.public_hex)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._private.sign(message)).decode()

    def record_metadata(self, s3_key: str, data: bytes) -> dict[str, str]:
        """The S3 metadata that makes an audit record verifiable."""
        return {SIGNATURE_META: self.sign(record_message(s3_key, data)), KEY_ID_META: self.key_id,
                SHA256_META: sha256_hex(data)}

    def __repr__(self) -> str:  # never print the seed
        return f"Signer(key_id={self.key_id})"


class Verifier:
    """Public keys by key id. Unknown key ids and bad signatures both answer False.

    `review_hexes` are the review console's keys (the API signs reviews, docs/REVIEW.md): trusted on
    review records only (`review=True`), so the API, which holds one, cannot sign a verdict that verifies.
    The workers' keys are trusted on both."""

    def __init__(self, public_hexes: Iterable[str], review_hexes: Iterable[str] = ()) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self.keys = {key_id(p): Ed25519PublicKey.from_public_bytes(bytes.fromhex(p)) for p in public_hexes}
        self.review_keys = {key_id(p): Ed25519PublicKey.from_public_bytes(bytes.fromhex(p)) for p in review_hexes}

    def verify(self, message: bytes, signature_b64: str, kid: str, review: bool = False) -> bool:
        from cryptography.exceptions import InvalidSignature

        public = self.keys.get(kid) or (self.review_keys.get(kid) if review else None)
        if public is None:
            return False
        try:
            public.verify(base64.b64decode(signature_b64), message)
        except (InvalidSignature, ValueError):
            return False
        return True


def generate_key() -> tuple[str, str]:
    """(private seed hex, public key hex) for a new signing key."""
    import os

    seed = os.urandom(32).hex()
    return seed, Signer(seed).public_hex


def signer_from_settings(settings) -> Signer | None:
    """The workers' signer, or None (records are written unsigned; `audit verify` flags them)."""
    if not settings.audit_signing_key:
        from workers.core.logging import get_logger

        get_logger("workers.audit.signing").warning(
            "audit_signing_disabled", hint="set TENDERSCAN_AUDIT_SIGNING_KEY; audit records are written unsigned")
        return None
    return Signer(settings.audit_signing_key)


def review_signer_from_settings(settings) -> Signer | None:
    """The API's signer for review records (TENDERSCAN_REVIEW_SIGNING_KEY), or None: unsigned reviews."""
    return Signer(settings.review_signing_key) if settings.review_signing_key else None


def verifier_from_settings(settings, extra_public: Iterable[str] = ()) -> Verifier:
    """Trust the published public keys, the extra ones given, and the own signing key's public half;
    the review keys (published, and the own one) on review records only."""
    keys = list(settings.audit_public_keys) + [parse_key_hex(p, "--public-key") for p in extra_public]
    if settings.audit_signing_key:
        keys.append(Signer(settings.audit_signing_key).public_hex)
    reviews = list(settings.review_public_keys)
    if settings.review_signing_key:
        reviews.append(Signer(settings.review_signing_key).public_hex)
    return Verifier(keys, reviews)


# --- Merkle root over one tenant-day ------------------------------------------------------------
def leaf_hash(scan_id: str, digest_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + f"{scan_id}:{digest_hex}".encode()).digest()


def merkle_root(entries: Iterable[tuple[str, str]]) -> str:
    """Root over (scan_id, sha256 hex) pairs, in scan_id order."""
    level = [leaf_hash(s, d) for s, d in sorted(entries)]
    if not level:
        return sha256_hex(b"")
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
