"""Cipher suites (RFC 9420 §5, §17.1): one value object owns every primitive choice.

Protocol code never branches on the suite number; it asks its :class:`CipherSuite` for
``hash``, ``expand_with_label``, ``seal``/``open``, ``hpke_seal``, ``sign`` and so on.
Keys cross this API as bytes in the encodings RFC 9420 and the test vectors use: HPKE keys
as RFC 9180 SerializePublicKey/SerializePrivateKey, Ed25519/Ed448 keys raw (RFC 8032),
ECDSA public keys as uncompressed points and private keys as big-endian scalars, ECDSA
signatures DER encoded (§5.1.2).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

from . import hpke
from .codec import encode_varint
from .errors import DecryptionError, UnsupportedError, UsageError, VerificationError
from .hpke import Kdf

MLS_LABEL_PREFIX = b"MLS 1.0 "


class CipherSuiteId(IntEnum):
    """IANA MLS cipher suite identifiers (§17.1)."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 1
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 2
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 3
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 4
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 5
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 6
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 7


def _vb(data: bytes, out: bytearray) -> None:
    encode_varint(len(data), out)
    out += data


#: (label, length) -> the leading ``uint16 length; opaque label<V>`` of KDFLabel (§8)
_KDF_LABEL_HEADS: dict[tuple[bytes | str, int], bytes] = {}


def _kdf_label_head(label: bytes | str, length: int) -> bytes:
    """``uint16 length; opaque label<V>`` of KDFLabel (§8), memoised per (label, length)."""
    head = _KDF_LABEL_HEADS.get((label, length))
    if head is None:
        raw = label.encode() if isinstance(label, str) else label
        buf = bytearray(length.to_bytes(2, "big"))
        _vb(MLS_LABEL_PREFIX + raw, buf)
        head = bytes(buf)
        if len(_KDF_LABEL_HEADS) < 1024:  # labels are protocol constants; stay bounded
            _KDF_LABEL_HEADS[(label, length)] = head
    return head


def _labeled(label: bytes, context: bytes) -> bytes:
    """Encode ``struct { opaque label<V>; opaque context<V>; }`` with the MLS prefix:
    the shape of SignContent (§5.1.2) and EncryptContext (§5.1.3)."""
    out = bytearray()
    _vb(MLS_LABEL_PREFIX + label, out)
    _vb(context, out)
    return bytes(out)


# --------------------------------------------------------------------------- signatures


class _Signer:
    """One signature scheme: key generation, sign, verify on raw byte keys."""

    def generate(self) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def public_key(self, private_key: bytes) -> bytes:
        raise NotImplementedError

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        raise NotImplementedError

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        raise NotImplementedError

    def verify_uncached(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """:meth:`verify` without touching the key cache: for batches of many distinct
        keys (a joiner's leaf signatures), checked on several threads."""
        return self.verify(public_key, message, signature)


#: How many loaded private / public key objects each signature scheme keeps. A member
#: signs every message with the same key, and loading it from bytes costs about as much
#: as a fifth of the signature itself; the cache is small and bounded.
_PRIVATE_KEY_CACHE = 8
_PUBLIC_KEY_CACHE = 64


def _cached(cache: dict[bytes, Any], limit: int, raw: bytes, load: Callable[[bytes], Any]) -> Any:
    """``load(raw)``, memoised in ``cache`` (insertion-ordered: the oldest entry is
    evicted first). Only successfully loaded keys are stored; anything but bytes goes
    straight to ``load``, which accepts or rejects it as before."""
    if type(raw) is not bytes:
        return load(raw)
    key = cache.get(raw)
    if key is None:
        key = load(raw)
        if len(cache) >= limit:
            with suppress(RuntimeError, StopIteration):  # another thread evicting too
                cache.pop(next(iter(cache)), None)
        cache[raw] = key
    return key


class _EdDSA(_Signer):
    def __init__(self, priv_cls: Any, pub_cls: Any) -> None:
        self._priv = priv_cls
        self._pub = pub_cls
        self._priv_cache: dict[bytes, Any] = {}
        self._pub_cache: dict[bytes, Any] = {}

    def generate(self) -> tuple[bytes, bytes]:
        sk = self._priv.generate()
        return sk.private_bytes_raw(), sk.public_key().public_bytes_raw()

    def _load_uncached(self, private_key: bytes) -> Any:
        try:
            return self._priv.from_private_bytes(private_key)
        except (ValueError, TypeError):
            raise UsageError("invalid EdDSA private key") from None

    def _load(self, private_key: bytes) -> Any:
        return _cached(self._priv_cache, _PRIVATE_KEY_CACHE, private_key, self._load_uncached)

    def public_key(self, private_key: bytes) -> bytes:
        pub: bytes = self._load(private_key).public_key().public_bytes_raw()
        return pub

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        sig: bytes = self._load(private_key).sign(message)
        return sig

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            key = _cached(self._pub_cache, _PUBLIC_KEY_CACHE, public_key,
                          self._pub.from_public_bytes)
            key.verify(signature, message)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True

    def verify_uncached(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            self._pub.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


class _Ed25519(_EdDSA):
    """Ed25519 (RFC 8032) with verification by libsodium (through PyNaCl).

    Verifying is most of the cost of joining a large group: a joiner checks every leaf
    signature of the tree (§7.3, §12.4.3.1), 1,000 of them for a 1,000-member group.
    libsodium's ``crypto_sign_open`` takes about half the CPU time of the OpenSSL 3
    verifier behind ``cryptography`` (55 against 110 µs here) and needs no key object.
    It checks the same equation, cofactorless, with a canonical S (RFC 8032 §5.1.7), and
    is stricter in one respect: it refuses public keys and R of small order, which no
    honest signer produces. Signing is libsodium's too (23 against 34 µs; Ed25519
    signatures are deterministic, so the bytes are the same, RFC 8032 §5.1.6)."""

    _SIGNATURE_SIZE = 64
    _KEY_SIZE = 32

    def __init__(self) -> None:
        super().__init__(ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)

    def _load_uncached(self, private_key: bytes) -> bytes:
        """libsodium's 64-byte secret key (seed || public key) for the RFC 8032 seed:
        what the private-key cache holds for Ed25519."""
        if (not isinstance(private_key, bytes | bytearray | memoryview)
                or len(private_key) != self._KEY_SIZE):
            raise UsageError("invalid EdDSA private key")
        secret: bytes = crypto_sign_seed_keypair(bytes(private_key))[1]
        return secret

    def public_key(self, private_key: bytes) -> bytes:
        secret: bytes = self._load(private_key)
        return secret[self._KEY_SIZE:]

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        signed: bytes = crypto_sign(bytes(message), self._load(private_key))
        return signed[:self._SIGNATURE_SIZE]

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if (type(public_key) is not bytes or len(public_key) != self._KEY_SIZE
                or type(signature) is not bytes or len(signature) != self._SIGNATURE_SIZE):
            return False
        try:
            crypto_sign_open(signature + bytes(message), public_key)
        except (CryptoError, ValueError, TypeError):
            return False
        return True

    def verify_uncached(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return self.verify(public_key, message, signature)


class _ECDSA(_Signer):
    def __init__(self, curve: ec.EllipticCurve, hash_alg: hashes.HashAlgorithm) -> None:
        self._curve = curve
        self._alg = ec.ECDSA(hash_alg)
        self._size = (curve.key_size + 7) // 8
        self._priv_cache: dict[bytes, Any] = {}

    def _load(self, private_key: bytes) -> ec.EllipticCurvePrivateKey:
        key: ec.EllipticCurvePrivateKey = _cached(self._priv_cache, _PRIVATE_KEY_CACHE,
                                                  private_key, self._load_uncached)
        return key

    def _load_uncached(self, private_key: bytes) -> ec.EllipticCurvePrivateKey:
        # Some encoders drop leading zero bytes of the scalar; accept up to the field size.
        if not 0 < len(private_key) <= self._size:
            raise UsageError(f"ECDSA private key must be at most {self._size} bytes")
        try:
            return ec.derive_private_key(int.from_bytes(private_key, "big"), self._curve)
        except ValueError:
            raise UsageError("ECDSA private key out of range") from None

    def generate(self) -> tuple[bytes, bytes]:
        sk = ec.generate_private_key(self._curve)
        scalar = sk.private_numbers().private_value.to_bytes(self._size, "big")
        return scalar, _point(sk.public_key())

    def public_key(self, private_key: bytes) -> bytes:
        return _point(self._load(private_key).public_key())

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        return self._load(private_key).sign(message, self._alg)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            pk = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, public_key)
            pk.verify(signature, message, self._alg)
        except (InvalidSignature, ValueError):
            return False
        return True


def _point(pk: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return pk.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


class _MLDSA(_EdDSA):
    """ML-DSA (FIPS 204), pure, with the empty context string, as the MLS signature
    scheme of the PQ suites (draft-ietf-mls-pq-ciphersuites). The private key is the
    32-byte seed xi (FIPS 204 §6.1), the public key the raw encoding of pk; signing,
    verifying and the key caches are EdDSA's (same raw-bytes key API in cryptography)."""

    def __init__(self, priv_cls: Any, pub_cls: Any, name: str) -> None:
        super().__init__(priv_cls, pub_cls)
        self._name = name

    def _load_uncached(self, private_key: bytes) -> Any:
        if type(private_key) is not bytes or len(private_key) != 32:
            raise UsageError(f"{self._name} private key must be a 32-byte seed")
        return self._priv.from_seed_bytes(private_key)

    def generate(self) -> tuple[bytes, bytes]:
        seed = os.urandom(32)
        return seed, self.public_key(seed)


# --------------------------------------------------------------------------- suites


#: (public key, largest signature) in bytes per signature scheme: raw EdDSA keys and
#: signatures (RFC 8032), uncompressed points and DER signatures for ECDSA, ML-DSA-87's
#: pk and signature (FIPS 204 Table 2)
_SIGNATURE_SIZES: dict[str, tuple[int, int]] = {
    "ed25519": (32, 64),
    "ed448": (57, 114),
    "ecdsa_secp256r1_sha256": (65, 72),
    "ecdsa_secp384r1_sha384": (97, 104),
    "ecdsa_secp521r1_sha512": (133, 139),
    "mldsa87": (2592, 4627),
}
#: a LeafNode's bytes besides its keys and signature (basic credential, capabilities,
#: lifetime, vector headers), and a whole suite-1 LeafNode: see CipherSuite.leaf_scale
_LEAF_OVERHEAD = 72
_SUITE1_LEAF = 200


@dataclass(frozen=True)
class CipherSuite:
    """An MLS cipher suite (§5.1): HPKE (KEM, KDF, AEAD), hash/MAC, signature scheme."""

    id: int
    name: str
    hash_name: str  # hashlib name: sha256, sha384, sha512
    kem_id: int
    kdf_id: int
    aead_id: int
    signature_scheme: str
    _aead_cls: Any = field(repr=False, compare=False)
    _signer: _Signer = field(repr=False, compare=False)
    #: DeriveKeyPair profile of a PQ KEM (hpke.KEM_PROFILES); ignored by the DH KEMs
    kem_profile: str = hpke.PROFILE_HPKE_PQ
    #: an experimental suite with an unregistered code point (docs/pq.md)
    experimental: bool = False

    # --- sizes ---------------------------------------------------------------
    @cached_property
    def hash_length(self) -> int:
        """KDF.Nh: the output size of the suite's KDF, the size of every MLS secret
        (§5.1, §8). Equal to :attr:`hash_size` in every RFC 9420 suite; the ts-mls PQ
        profile pairs SHA-384 with HKDF-SHA512 (79/80), where it is 64."""
        return self.hpke.kdf.n_h

    @property
    def kdf_nh(self) -> int:
        """KDF.Nh (the same as :attr:`hash_length`)."""
        return self.hash_length

    @cached_property
    def hash_size(self) -> int:
        """Output size of the suite's hash (tree and transcript hashes, references, and
        the MAC of §5.1)."""
        return hashlib.new(self.hash_name).digest_size

    @cached_property
    def aead_key_size(self) -> int:
        """Nk of the AEAD."""
        return 16 if self.aead_id == 1 else 32

    @property
    def aead_nonce_size(self) -> int:
        """Nn of the AEAD (12 for AES-GCM and ChaCha20-Poly1305)."""
        return 12

    @cached_property
    def leaf_scale(self) -> int:
        """How many times a LeafNode of this suite outweighs one of suite 1 (rounded
        up): its HPKE and signature public keys and signature, plus ~72 bytes of
        credential, capabilities and lifetime, against suite 1's ~200 bytes. 1 for
        suites 1-3, 2-3 for 4-7, 7-8 for the X-Wing and ML-KEM suites, 45 for
        ML-DSA-87. :class:`~mls_core.config.InputLimits` scales its byte bounds by it,
        so that the default bounds hold as many members in every suite."""
        sig_pk, sig = _SIGNATURE_SIZES[self.signature_scheme]
        return -(-(self.hpke.kem.n_pk + sig_pk + sig + _LEAF_OVERHEAD) // _SUITE1_LEAF)

    @cached_property
    def hpke(self) -> hpke.Hpke:
        return hpke.Hpke(self.kem_id, self.kdf_id, self.aead_id, kem_profile=self.kem_profile)

    @cached_property
    def _mac_kdf(self) -> Kdf:
        """HMAC with the suite's hash (§5.1: MAC is HMAC with the suite's hash), which is
        not the KDF's hash in the ts-mls SHA-384 suites."""
        if self.hpke.kdf.hash_name == self.hash_name:
            return self.hpke.kdf
        return Kdf(0, self.hash_name, self.hash_size)

    # --- hash, MAC, KDF (RFC 5869) -----------------------------------------
    @cached_property
    def _hash_new(self) -> Any:
        # hashlib.sha256 etc. directly: hashlib.new() looks the name up on every call,
        # which shows at the ~50,000 hashes of joining a 10,000-member group.
        return getattr(hashlib, self.hash_name)

    def hash(self, data: bytes) -> bytes:
        digest: bytes = self._hash_new(data).digest()
        return digest

    def mac(self, key: bytes, data: bytes) -> bytes:
        """MAC(key, data): HMAC with the suite's hash (§5.1)."""
        out: bytes = self._mac_kdf.hmac(key, data)
        return out

    def verify_mac(self, key: bytes, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.mac(key, data), tag)

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """KDF.Extract(salt, ikm) = HMAC(salt, ikm) (RFC 5869 §2.2)."""
        return self.hpke.kdf.extract(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """KDF.Expand(prk, info, length) (RFC 5869 §2.3)."""
        return self.hpke.kdf.expand(prk, info, length)

    # --- labeled derivations (§5.1, §8, §9) ---------------------------------
    def expand_with_label(
        self, secret: bytes, label: bytes | str, context: bytes, length: int
    ) -> bytes:
        """ExpandWithLabel(Secret, Label, Context, Length) = KDF.Expand(Secret, KDFLabel, Length),
        KDFLabel = struct { uint16 length; opaque label<V>; opaque context<V>; } (§8)."""
        head = _kdf_label_head(label, length)
        n = len(context)
        if n < 0x40:
            return self.expand(secret, head + bytes((n,)) + context, length)
        info = bytearray(head)
        _vb(context, info)
        return self.expand(secret, bytes(info), length)

    def derive_secret(self, secret: bytes, label: bytes | str) -> bytes:
        """DeriveSecret(Secret, Label) = ExpandWithLabel(Secret, Label, "", KDF.Nh) (§8)."""
        return self.expand_with_label(secret, label, b"", self.hash_length)

    def derive_tree_secret(
        self, secret: bytes, label: bytes | str, generation: int, length: int
    ) -> bytes:
        """DeriveTreeSecret(Secret, Label, Generation, Length) (§9)."""
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    @cached_property
    def _ratchet_heads(self) -> tuple[bytes, bytes, bytes]:
        """The KDFLabels of DeriveTreeSecret's "key", "nonce" and "secret" up to the
        generation, each with the one-byte length of its 4-byte context (§8, §9.1)."""
        return tuple(  # type: ignore[return-value]
            _kdf_label_head(label, length) + b"\x04"
            for label, length in ((b"key", self.aead_key_size),
                                  (b"nonce", self.aead_nonce_size),
                                  (b"secret", self.hash_length)))

    def ratchet_step(self, secret: bytes, generation: int,
                     last: bool = False) -> tuple[bytes, bytes, bytes]:
        """(key, nonce, next ratchet secret) of one generation of a sender ratchet:
        DeriveTreeSecret(secret, "key" / "nonce" / "secret", generation, Nk / Nn / Nh)
        (§9.1), as three HMACs with the labels built once per suite. ``last``: the final
        generation, with no next secret (b"")."""
        hmac_, n_k, n_n = self.hpke.kdf.hmac, self.aead_key_size, self.aead_nonce_size
        head_key, head_nonce, head_secret = self._ratchet_heads
        tail = generation.to_bytes(4, "big") + b"\x01"  # context, then HKDF's counter
        key = hmac_(secret, head_key + tail)[:n_k]
        nonce = hmac_(secret, head_nonce + tail)[:n_n]
        return key, nonce, b"" if last else hmac_(secret, head_secret + tail)

    def sender_data_key_nonce(self, sender_data_secret: bytes,
                              ciphertext: bytes) -> tuple[bytes, bytes]:
        """(sender_data_key, sender_data_nonce) = ExpandWithLabel(sender_data_secret,
        "key" / "nonce", ciphertext_sample, Nk / Nn), the sample the first KDF.Nh bytes
        of the content ciphertext, or all of it if shorter (§6.3.2)."""
        sample = ciphertext[: self.hash_length]
        n_k, n_n = self.aead_key_size, self.aead_nonce_size
        hmac_ = self.hpke.kdf.hmac
        context = bytearray()
        _vb(sample, context)
        context += b"\x01"
        key = hmac_(sender_data_secret, _kdf_label_head(b"key", n_k) + context)[:n_k]
        nonce = hmac_(sender_data_secret, _kdf_label_head(b"nonce", n_n) + context)[:n_n]
        return key, nonce

    def ref_hash(self, label: bytes | str, value: bytes) -> bytes:
        """RefHash(label, value) = Hash(RefHashInput{label<V>, value<V>}) (§5.2)."""
        if isinstance(label, str):
            label = label.encode()
        buf = bytearray()
        _vb(label, buf)
        _vb(value, buf)
        return self.hash(bytes(buf))

    def make_key_package_ref(self, key_package: bytes) -> bytes:
        """MakeKeyPackageRef over the encoded KeyPackage (§5.2)."""
        return self.ref_hash(b"MLS 1.0 KeyPackage Reference", key_package)

    def make_proposal_ref(self, authenticated_content: bytes) -> bytes:
        """MakeProposalRef over the encoded AuthenticatedContent (§5.2)."""
        return self.ref_hash(b"MLS 1.0 Proposal Reference", authenticated_content)

    # --- AEAD ----------------------------------------------------------------
    def seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        try:
            return bytes(self._aead_cls(key).encrypt(nonce, plaintext, aad))
        except ValueError:
            raise UsageError("AEAD key or nonce has the wrong size") from None

    def open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            return bytes(self._aead_cls(key).decrypt(nonce, ciphertext, aad))
        except (InvalidTag, ValueError):
            raise DecryptionError("AEAD decryption failed") from None

    # --- HPKE (RFC 9180 base mode) -------------------------------------------
    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """KEM.DeriveKeyPair(ikm) -> (private_key, public_key) (RFC 9180 §7.1.3)."""
        return self.hpke.kem.derive_key_pair(ikm)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh HPKE key pair (GenerateKeyPair)."""
        return self.hpke.kem.generate_key_pair()

    def hpke_public_key(self, private_key: bytes) -> bytes:
        return self.hpke.kem.public_key(private_key)

    def encrypt_with_label(self, public_key: bytes, label: bytes | str, context: bytes,
                           plaintext: bytes) -> tuple[bytes, bytes]:
        """EncryptWithLabel -> (kem_output, ciphertext) (§5.1.3)."""
        if isinstance(label, str):
            label = label.encode()
        return self.hpke.seal_base(public_key, _labeled(label, context), b"", plaintext)

    def encrypt_with_label_many(self, label: bytes | str, context: bytes,
                                recipients: Sequence[tuple[bytes, bytes]],
                                ) -> list[tuple[bytes, bytes]]:
        """EncryptWithLabel to many (public_key, plaintext) pairs sharing label and
        context (e.g. the GroupSecrets of a Welcome): EncryptContext is hashed once."""
        if isinstance(label, str):
            label = label.encode()
        return self.hpke.seal_base_many(recipients, _labeled(label, context), b"")

    def decrypt_with_label(self, private_key: bytes, label: bytes | str, context: bytes,
                           kem_output: bytes, ciphertext: bytes) -> bytes:
        """DecryptWithLabel (§5.1.3); raises DecryptionError on failure."""
        if isinstance(label, str):
            label = label.encode()
        info = _labeled(label, context)
        return self.hpke.open_base(kem_output, private_key, info, b"", ciphertext)

    # --- signatures (§5.1.2) -------------------------------------------------
    def generate_signature_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh (private, public) signature key pair."""
        return self._signer.generate()

    def signature_public_key(self, private_key: bytes) -> bytes:
        return self._signer.public_key(private_key)

    def sign_with_label(self, private_key: bytes, label: bytes | str, content: bytes) -> bytes:
        """SignWithLabel(SignatureKey, Label, Content) (§5.1.2)."""
        if isinstance(label, str):
            label = label.encode()
        return self._signer.sign(private_key, _labeled(label, content))

    def verify_with_label(self, public_key: bytes, label: bytes | str, content: bytes,
                          signature: bytes) -> bool:
        """VerifyWithLabel(...) -> bool (§5.1.2)."""
        if isinstance(label, str):
            label = label.encode()
        return self._signer.verify(public_key, _labeled(label, content), signature)

    def verify_many_with_label(self, label: bytes | str,
                               items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """VerifyWithLabel for each (public_key, content, signature), in order (§5.1.2).

        A large batch (a joiner checks every leaf signature of the tree, §12.4.3.1) is
        split across threads: cryptography releases the GIL inside signature
        verification (Ed25519/Ed448 from its release 47, ECDSA earlier), so on a machine
        with several cores the checks run in parallel; with older releases it only costs
        the threads' start-up."""
        if isinstance(label, str):
            label = label.encode()
        workers = min(_verify_workers(len(items)), len(items))
        if workers <= 1:
            return self._verify_chunk(label, items)
        size = -(-len(items) // workers)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        try:
            with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
                parts = list(pool.map(lambda chunk: self._verify_chunk(label, chunk), chunks))
        except RuntimeError:  # no threads on this platform (e.g. a WebAssembly build)
            return self._verify_chunk(label, items)
        return [ok for part in parts for ok in part]

    def _verify_chunk(self, label: bytes,
                      items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        verify = self._signer.verify_uncached
        return [verify(pk, _labeled(label, content), sig) for pk, content, sig in items]

    def check_signature(self, public_key: bytes, label: bytes | str, content: bytes,
                        signature: bytes, what: str) -> None:
        """VerifyWithLabel, raising VerificationError naming ``what`` on failure."""
        if not self.verify_with_label(public_key, label, content, signature):
            raise VerificationError(f"invalid signature on {what}")


#: Signatures per thread below which a batch is verified on the calling thread alone.
_MIN_PER_THREAD = 128
_MAX_THREADS = 8


def _verify_workers(count: int) -> int:
    """Threads for verifying ``count`` signatures: one per usable core, each with at
    least :data:`_MIN_PER_THREAD` signatures."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, min(cores, _MAX_THREADS, count // _MIN_PER_THREAD))


def _suite(sid: CipherSuiteId, hash_name: str, kem: int, kdf: int, aead: int,
           sig: str, aead_cls: Any, signer: _Signer) -> CipherSuite:
    return CipherSuite(int(sid), sid.name, hash_name, kem, kdf, aead, sig, aead_cls, signer)


_ED25519 = _Ed25519()
_ED448 = _EdDSA(ed448.Ed448PrivateKey, ed448.Ed448PublicKey)

# KEM ids (RFC 9180 §7.1): P-256 0x10, P-384 0x11, P-521 0x12, X25519 0x20, X448 0x21.
# KDF ids: HKDF-SHA256 1, -SHA384 2, -SHA512 3. AEAD ids: AES-128-GCM 1, AES-256-GCM 2,
# ChaCha20-Poly1305 3.
_SUITES: dict[int, CipherSuite] = {
    s.id: s
    for s in (
        _suite(CipherSuiteId(1), "sha256", 0x20, 1, 1, "ed25519", AESGCM, _ED25519),
        _suite(CipherSuiteId(2), "sha256", 0x10, 1, 1, "ecdsa_secp256r1_sha256", AESGCM,
               _ECDSA(ec.SECP256R1(), hashes.SHA256())),
        _suite(CipherSuiteId(3), "sha256", 0x20, 1, 3, "ed25519", ChaCha20Poly1305, _ED25519),
        _suite(CipherSuiteId(4), "sha512", 0x21, 3, 2, "ed448", AESGCM, _ED448),
        _suite(CipherSuiteId(5), "sha512", 0x12, 3, 2, "ecdsa_secp521r1_sha512", AESGCM,
               _ECDSA(ec.SECP521R1(), hashes.SHA512())),
        _suite(CipherSuiteId(6), "sha512", 0x21, 3, 3, "ed448", ChaCha20Poly1305, _ED448),
        _suite(CipherSuiteId(7), "sha384", 0x11, 2, 2, "ecdsa_secp384r1_sha384", AESGCM,
               _ECDSA(ec.SECP384R1(), hashes.SHA384())),
    )
}

#: The RFC 9420 suites: what a KeyPackage advertises unless the experimental PQ suites
#: are enabled (:func:`supported_suites` is the live list).
SUPPORTED_SUITES: tuple[int, ...] = tuple(sorted(_SUITES))


# --------------------------------------------------------------------------- PQ suites
#
# Experimental post-quantum suites with UNREGISTERED code points: ts-mls 1.6.4's numbers
# 79-88 (its 2.x moves them to 0xF009-0xF012, accepted here as aliases). They follow the
# ts-mls profile (docs/pq.md): HKDF-SHA512 as HPKE and MLS KDF whatever the name says,
# the name's hash for hashes and the MAC, ts-mls's DeriveKeyPair. 77/78 (ML-KEM-512) are
# left out: cryptography 51 has no ML-KEM-512. Off unless enable_experimental_pq() is
# called or MLS_EXPERIMENTAL_PQ=1 is set in the environment.

_MLDSA87 = _MLDSA(mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey, "ML-DSA-87")
_TS_MLS_PQ = (
    # (id, name, hash, KEM, AEAD, AEAD class, signature scheme, signer)
    (79, "MLS_256_MLKEM768_AES256GCM_SHA384_Ed25519", "sha384", hpke.KEM_MLKEM768, 2,
     AESGCM, "ed25519", _ED25519),
    (80, "MLS_256_MLKEM768_CHACHA20POLY1305_SHA384_Ed25519", "sha384", hpke.KEM_MLKEM768, 3,
     ChaCha20Poly1305, "ed25519", _ED25519),
    (81, "MLS_256_MLKEM1024_AES256GCM_SHA512_Ed25519", "sha512", hpke.KEM_MLKEM1024, 2,
     AESGCM, "ed25519", _ED25519),
    (82, "MLS_256_MLKEM1024_CHACHA20POLY1305_SHA512_Ed25519", "sha512", hpke.KEM_MLKEM1024,
     3, ChaCha20Poly1305, "ed25519", _ED25519),
    (83, "MLS_256_XWING_AES256GCM_SHA512_Ed25519", "sha512", hpke.KEM_XWING, 2,
     AESGCM, "ed25519", _ED25519),
    (84, "MLS_256_XWING_CHACHA20POLY1305_SHA512_Ed25519", "sha512", hpke.KEM_XWING, 3,
     ChaCha20Poly1305, "ed25519", _ED25519),
    (85, "MLS_256_MLKEM1024_AES256GCM_SHA512_MLDSA87", "sha512", hpke.KEM_MLKEM1024, 2,
     AESGCM, "mldsa87", _MLDSA87),
    (86, "MLS_256_MLKEM1024_CHACHA20POLY1305_SHA512_MLDSA87", "sha512", hpke.KEM_MLKEM1024,
     3, ChaCha20Poly1305, "mldsa87", _MLDSA87),
    (87, "MLS_256_XWING_AES256GCM_SHA512_MLDSA87", "sha512", hpke.KEM_XWING, 2,
     AESGCM, "mldsa87", _MLDSA87),
    (88, "MLS_256_XWING_CHACHA20POLY1305_SHA512_MLDSA87", "sha512", hpke.KEM_XWING, 3,
     ChaCha20Poly1305, "mldsa87", _MLDSA87),
)
#: ts-mls 2.x's ids for the same suites: 0xF007 + (ts-mls 1.x id - 77)
TS_MLS_2X_ALIASES: dict[int, int] = {0xF007 + sid - 77: sid for sid, *_ in _TS_MLS_PQ}
#: ts-mls 1.x's ML-KEM-512 suites, which cryptography 51 cannot serve
UNSUPPORTED_TS_MLS_PQ = (77, 78, 0xF007, 0xF008)


def _pq_suite(sid: int, name: str, hash_name: str, kem: int, aead: int, aead_cls: Any,
              sig: str, signer: _Signer) -> CipherSuite:
    return CipherSuite(sid, name, hash_name, kem, hpke.KDF_HKDF_SHA512, aead, sig, aead_cls,
                       signer, kem_profile=hpke.PROFILE_TS_MLS, experimental=True)


_EXPERIMENTAL: dict[int, CipherSuite] = {
    sid: _pq_suite(sid, *rest) for sid, *rest in _TS_MLS_PQ  # type: ignore[arg-type]
}
_EXPERIMENTAL.update({
    alias: _pq_suite(alias, *next(rest for sid, *rest in _TS_MLS_PQ  # type: ignore[arg-type]
                                  if sid == base))
    for alias, base in TS_MLS_2X_ALIASES.items()
})
#: the experimental PQ suites' ids, ts-mls 1.x numbers first, then the 2.x aliases
EXPERIMENTAL_PQ_SUITES: tuple[int, ...] = tuple(_EXPERIMENTAL)

_experimental_enabled = os.environ.get("MLS_EXPERIMENTAL_PQ", "") not in ("", "0")


def enable_experimental_pq(enabled: bool = True) -> None:
    """Opt in to (or back out of) the experimental PQ suites: :func:`get_suite` then
    serves them and :func:`supported_suites` (hence default KeyPackage capabilities)
    lists them. Process-wide; the same as MLS_EXPERIMENTAL_PQ=1 at import."""
    global _experimental_enabled
    _experimental_enabled = enabled


def experimental_pq_enabled() -> bool:
    """Whether the experimental PQ suites are enabled."""
    return _experimental_enabled


def supported_suites() -> tuple[int, ...]:
    """Every suite :func:`get_suite` serves now: the RFC 9420 suites, then (if enabled)
    the experimental PQ suites 79-88 (their 2.x aliases are accepted, not advertised)."""
    if not _experimental_enabled:
        return SUPPORTED_SUITES
    return SUPPORTED_SUITES + tuple(sid for sid, *_ in _TS_MLS_PQ)


def get_suite(suite_id: int) -> CipherSuite:
    """Return the CipherSuite for an id, or raise UnsupportedError (for an experimental
    PQ suite too while those are not enabled)."""
    suite = _SUITES.get(suite_id)
    if suite is not None:
        return suite
    suite = _EXPERIMENTAL.get(suite_id)
    if suite is not None:
        if _experimental_enabled:
            return suite
        raise UnsupportedError(
            f"cipher suite {suite_id:#06x} is an experimental PQ suite: enable it with "
            "mls_core.ciphersuite.enable_experimental_pq() or MLS_EXPERIMENTAL_PQ=1")
    if suite_id in UNSUPPORTED_TS_MLS_PQ:
        raise UnsupportedError(
            f"cipher suite {suite_id:#06x} (ML-KEM-512) is not supported: cryptography has "
            "no ML-KEM-512")
    raise UnsupportedError(f"unsupported cipher suite {suite_id:#06x}")
