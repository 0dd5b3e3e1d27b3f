"""HPKE, RFC 9180, in mode_base: the public-key encryption MLS uses (RFC 9420 §5.1.3).

Only what MLS needs, but all of it for every MLS cipher suite: DHKEM (§4.1) over P-256
(0x0010), P-384 (0x0011), P-521 (0x0012), X25519 (0x0020) and X448 (0x0021) with
DeriveKeyPair (§7.1.3), HKDF-SHA256/384/512 (KDF ids 1/2/3), AES-128-GCM, AES-256-GCM and
ChaCha20-Poly1305 (AEAD ids 1/2/3), the mode_base key schedule (§5.1), the encryption
context (§5.2) and single-shot seal/open (§6.1).

Keys cross this API as bytes: SerializePublicKey / SerializePrivateKey of §7.1.1-§7.1.2
(uncompressed SEC1 points and big-endian scalars on the NIST curves, raw RFC 7748 strings
for X25519/X448). Built on ``cryptography``'s DH primitives and on ``hmac``. Single-shot
SealBase/OpenBase (§6.1) go to ``cryptography``'s own ``hpke`` module where the
installed release has it and the suite (X25519 and the NIST curves, every KDF and AEAD
here; no application AAD), so the hot path of an UpdatePath runs in one native call; the code
here remains for X448, DeriveKeyPair, the exporter contexts of SetupBaseS/R, a non-empty
AAD, and a batch whose ``info`` is large (see :meth:`Hpke.seal_base_many`). The two
agree on every such suite (tests/core/test_hpke.py and the official vectors).

Failures: an invalid recipient public key when sealing, an invalid private key, or a
DeriveKeyPair that finds no scalar raise :class:`CryptoError`; anything wrong while opening
(bad ``enc``, DH failure, AEAD tag mismatch) raises :class:`DecryptionError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import CryptoError, DecryptionError, UnsupportedError, UsageError

_native_hpke: Any
try:
    from cryptography.hazmat.primitives import hpke as _native_hpke
except ImportError:  # pragma: no cover - older cryptography releases have no hpke module
    _native_hpke = None

HPKE_VERSION = b"HPKE-v1"
MODE_BASE = 0x00

KEM_P256 = 0x0010
KEM_P384 = 0x0011
KEM_P521 = 0x0012
KEM_X25519 = 0x0020
KEM_X448 = 0x0021

KDF_HKDF_SHA256 = 0x0001
KDF_HKDF_SHA384 = 0x0002
KDF_HKDF_SHA512 = 0x0003

AEAD_AES128GCM = 0x0001
AEAD_AES256GCM = 0x0002
AEAD_CHACHA20POLY1305 = 0x0003


# --------------------------------------------------------------------------- KDF


#: HMAC's inner and outer pads (RFC 2104 §2) as ``bytes.translate`` tables
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Kdf:
    """HKDF (RFC 5869) with one hash: the KDF of §7.2, ids 1/2/3.

    HMAC (RFC 2104) is written out over ``hashlib``'s constructor of the hash rather
    than called as ``hmac.digest``: with OpenSSL 3 the latter looks the hash up by name
    on every call, which made it twice as slow on the short inputs of every MLS key
    derivation (ten per application message). tests/core/test_hpke.py checks the two
    agree for every hash and key length."""

    __slots__ = ("_block", "_new", "hash_name", "id", "n_h")

    def __init__(self, kdf_id: int, hash_name: str, n_h: int) -> None:
        self.id = kdf_id
        self.hash_name = hash_name
        self.n_h = n_h
        self._new = getattr(hashlib, hash_name)
        self._block = self._new().block_size

    def hmac(self, key: bytes, msg: bytes) -> bytes:
        """HMAC-Hash(key, msg) = H((K ^ opad) || H((K ^ ipad) || msg)) (RFC 2104 §2)."""
        new = self._new
        if len(key) > self._block:
            key = new(key).digest()
        key = key.ljust(self._block, b"\0")
        inner = new(key.translate(_IPAD))
        inner.update(msg)
        digest: bytes = new(key.translate(_OPAD) + inner.digest()).digest()
        return digest

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """Extract(salt, ikm) = HMAC-Hash(salt, ikm); an empty salt acts as Nh zero bytes
        because HMAC zero-pads its key."""
        return self.hmac(salt, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """Expand(prk, info, L) (RFC 5869 §2.3); L at most 255 * Nh."""
        if length <= self.n_h:  # the common case: one block
            return self.hmac(prk, info + b"\x01")[:length]
        if length > 255 * self.n_h:
            raise UsageError("HKDF-Expand length too large")
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            block = self.hmac(prk, block + info + bytes((counter,)))
            out += block
            counter += 1
        return bytes(out[:length])


_KDFS: dict[int, Kdf] = {
    KDF_HKDF_SHA256: Kdf(KDF_HKDF_SHA256, "sha256", 32),
    KDF_HKDF_SHA384: Kdf(KDF_HKDF_SHA384, "sha384", 48),
    KDF_HKDF_SHA512: Kdf(KDF_HKDF_SHA512, "sha512", 64),
}


class _Labeled:
    """LabeledExtract / LabeledExpand (§4) bound to one suite_id and KDF.

    The constant parts of the labeled inputs ("HPKE-v1" || suite_id || label, and for
    Expand the two-byte length in front) are built once per (label, length), not per call.
    """

    __slots__ = ("_expand_prefix", "_extract_prefix", "_prefix", "kdf")

    def __init__(self, suite_id: bytes, kdf: Kdf) -> None:
        self.kdf = kdf
        self._prefix = HPKE_VERSION + suite_id
        self._extract_prefix: dict[bytes, bytes] = {}
        self._expand_prefix: dict[tuple[bytes, int], bytes] = {}

    def extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        """LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label
        || ikm)."""
        prefix = self._extract_prefix.get(label)
        if prefix is None:
            prefix = self._extract_prefix.setdefault(label, self._prefix + label)
        return self.kdf.extract(salt, prefix + ikm)

    def expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        """LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) || "HPKE-v1" ||
        suite_id || label || info, L)."""
        key = (label, length)
        prefix = self._expand_prefix.get(key)
        if prefix is None:
            if not 0 <= length <= 0xFFFF:
                raise UsageError("LabeledExpand length out of range")
            prefix = self._expand_prefix.setdefault(
                key, length.to_bytes(2, "big") + self._prefix + label
            )
        return self.kdf.expand(prk, prefix + info, length)


# --------------------------------------------------------------------------- KEMs


class DHKem:
    """DHKEM(Group, KDF) of §4.1 over raw byte keys. Subclasses supply the group."""

    id: int
    n_secret: int  # Nsecret: size of the KEM shared secret
    n_enc: int  # Nenc: size of the encapsulated key
    n_pk: int  # Npk: size of a serialized public key
    n_sk: int  # Nsk: size of a serialized private key

    def __init__(self, kem_id: int, kdf: Kdf, n_secret: int, n_pk: int, n_sk: int) -> None:
        self.id = kem_id
        self.n_secret = n_secret
        self.n_enc = n_pk
        self.n_pk = n_pk
        self.n_sk = n_sk
        self._labeled = _Labeled(b"KEM" + kem_id.to_bytes(2, "big"), kdf)

    # --- group operations (subclasses) -------------------------------------
    def _load_private(self, sk: bytes) -> Any:
        """DeserializePrivateKey; raises CryptoError for an invalid key."""
        raise NotImplementedError

    def _load_public(self, pk: bytes) -> Any:
        """DeserializePublicKey with validation (§7.1.4); raises CryptoError."""
        raise NotImplementedError

    def _public_bytes(self, private: Any) -> bytes:
        """SerializePublicKey(pk(sk))."""
        raise NotImplementedError

    def _generate(self) -> Any:
        """A fresh private key object from the system CSPRNG (GenerateKeyPair)."""
        raise NotImplementedError

    def _dh(self, private: Any, public: Any) -> bytes:
        """DH(sk, pk); raises CryptoError on failure (e.g. an all-zero X25519/X448 output)."""
        raise NotImplementedError

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (SerializePrivateKey(sk), SerializePublicKey(pk)) (§7.1.3)."""
        raise NotImplementedError

    # --- the KEM -------------------------------------------------------------
    def public_key(self, sk: bytes) -> bytes:
        """SerializePublicKey(pk(DeserializePrivateKey(sk)))."""
        return self._public_bytes(self._load_private(sk))

    def validate_public_key(self, pk: bytes) -> None:
        """Raise CryptoError unless ``pk`` is a valid serialized public key (§7.1.4)."""
        self._load_public(pk)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """GenerateKeyPair() as serialized (private, public) key bytes."""
        return self.derive_key_pair(os.urandom(self.n_sk))

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        eae_prk = self._labeled.extract(b"", b"eae_prk", dh)
        return self._labeled.expand(eae_prk, b"shared_secret", kem_context, self.n_secret)

    def encap(self, pk_r: bytes, ikm_e: bytes | None = None) -> tuple[bytes, bytes]:
        """Encap(pkR) -> (shared_secret, enc) (§4.1). ``ikm_e`` makes the ephemeral key
        DeriveKeyPair(ikm_e), as the RFC 9180 test vectors do; leave it None otherwise."""
        public_r = self._load_public(pk_r)
        if ikm_e is None:
            private_e = self._generate()
        else:
            private_e = self._load_private(self.derive_key_pair(ikm_e)[0])
        enc = self._public_bytes(private_e)
        dh = self._dh(private_e, public_r)
        return self._extract_and_expand(dh, enc + pk_r), enc

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        """Decap(enc, skR) -> shared_secret (§4.1); DecryptionError if ``enc`` is invalid."""
        private_r = self._load_private(sk_r)
        try:
            public_e = self._load_public(enc)
            dh = self._dh(private_r, public_e)
        except CryptoError:
            raise DecryptionError("HPKE decapsulation failed") from None
        return self._extract_and_expand(dh, enc + self._public_bytes(private_r))


class _XKem(DHKem):
    """DHKEM(X25519, HKDF-SHA256) and DHKEM(X448, HKDF-SHA512) (RFC 7748 keys)."""

    def __init__(self, kem_id: int, kdf: Kdf, n_secret: int, n_key: int,
                 priv_cls: Any, pub_cls: Any) -> None:
        super().__init__(kem_id, kdf, n_secret, n_key, n_key)
        self._priv = priv_cls
        self._pub = pub_cls
        self._zero = bytes(n_key)

    def _load_private(self, sk: bytes) -> Any:
        if len(sk) != self.n_sk:
            raise CryptoError("invalid HPKE private key")
        return self._priv.from_private_bytes(sk)

    def _load_public(self, pk: bytes) -> Any:
        if len(pk) != self.n_pk:
            raise CryptoError("invalid HPKE public key")
        return self._pub.from_public_bytes(pk)

    def _public_bytes(self, private: Any) -> bytes:
        out: bytes = private.public_key().public_bytes_raw()
        return out

    def _generate(self) -> Any:
        return self._priv.generate()

    def _dh(self, private: Any, public: Any) -> bytes:
        # §7.1.4: an all-zero output (a small-order peer key) must be rejected. OpenSSL
        # already refuses it with ValueError; the explicit check does not rely on that.
        try:
            out: bytes = private.exchange(public)
        except ValueError:
            raise CryptoError("HPKE DH failed") from None
        if hmac.compare_digest(out, self._zero):
            raise CryptoError("HPKE DH output is zero")
        return out

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """§7.1.3: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", Nsk)."""
        dkp_prk = self._labeled.extract(b"", b"dkp_prk", ikm)
        sk = self._labeled.expand(dkp_prk, b"sk", b"", self.n_sk)
        return sk, self._public_bytes(self._priv.from_private_bytes(sk))


class _NistKem(DHKem):
    """DHKEM(P-256/P-384/P-521, HKDF-SHA256/384/512): SEC1 uncompressed public keys,
    big-endian private scalars."""

    def __init__(self, kem_id: int, kdf: Kdf, n_secret: int, curve: ec.EllipticCurve,
                 order: int, bitmask: int) -> None:
        n_sk = (curve.key_size + 7) // 8
        super().__init__(kem_id, kdf, n_secret, 1 + 2 * n_sk, n_sk)
        self._curve = curve
        self._order = order
        self._bitmask = bitmask
        self._ecdh = ec.ECDH()

    def _load_private(self, sk: bytes) -> Any:
        # Some encoders drop the scalar's leading zero bytes (seen in the official
        # vectors for P-521); a shorter big-endian integer denotes the same key.
        if not 0 < len(sk) <= self.n_sk:
            raise CryptoError("invalid HPKE private key")
        value = int.from_bytes(sk, "big")
        if not 0 < value < self._order:
            raise CryptoError("invalid HPKE private key")
        return ec.derive_private_key(value, self._curve)

    def _load_public(self, pk: bytes) -> Any:
        # Only the uncompressed form is a valid SerializePublicKey output (§7.1.1);
        # from_encoded_point checks that the point lies on the curve (§7.1.4).
        if len(pk) != self.n_pk or pk[0] != 0x04:
            raise CryptoError("invalid HPKE public key")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, pk)
        except ValueError:
            raise CryptoError("invalid HPKE public key") from None

    def _public_bytes(self, private: Any) -> bytes:
        out: bytes = private.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )
        return out

    def _generate(self) -> Any:
        return ec.generate_private_key(self._curve)

    def _dh(self, private: Any, public: Any) -> bytes:
        try:
            out: bytes = private.exchange(self._ecdh, public)
        except ValueError:
            raise CryptoError("HPKE DH failed") from None
        return out

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """§7.1.3: rejection-sample candidate scalars until one lies in [1, order)."""
        dkp_prk = self._labeled.extract(b"", b"dkp_prk", ikm)
        for counter in range(256):
            candidate = bytearray(
                self._labeled.expand(dkp_prk, b"candidate", bytes((counter,)), self.n_sk)
            )
            candidate[0] &= self._bitmask
            value = int.from_bytes(candidate, "big")
            if 0 < value < self._order:
                private = ec.derive_private_key(value, self._curve)
                return bytes(candidate), self._public_bytes(private)
        raise CryptoError("DeriveKeyPairError")


# Group orders (SEC 2 / FIPS 186-4); DeriveKeyPair needs them for rejection sampling.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
    "581A0DB248B0A77AECEC196ACCC52973", 16)
P521_ORDER = int(
    "01" + "FF" * 32 + "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16)

_KEMS: dict[int, DHKem] = {
    KEM_P256: _NistKem(KEM_P256, _KDFS[KDF_HKDF_SHA256], 32, ec.SECP256R1(), P256_ORDER, 0xFF),
    KEM_P384: _NistKem(KEM_P384, _KDFS[KDF_HKDF_SHA384], 48, ec.SECP384R1(), P384_ORDER, 0xFF),
    KEM_P521: _NistKem(KEM_P521, _KDFS[KDF_HKDF_SHA512], 64, ec.SECP521R1(), P521_ORDER, 0x01),
    KEM_X25519: _XKem(KEM_X25519, _KDFS[KDF_HKDF_SHA256], 32, 32,
                      x25519.X25519PrivateKey, x25519.X25519PublicKey),
    KEM_X448: _XKem(KEM_X448, _KDFS[KDF_HKDF_SHA512], 64, 56,
                    x448.X448PrivateKey, x448.X448PublicKey),
}


# --------------------------------------------------------------------------- AEADs


class Aead:
    """An AEAD of §7.3 (Nk, Nn = 12, Nt = 16)."""

    __slots__ = ("_cls", "id", "n_k", "n_n", "n_t")

    def __init__(self, aead_id: int, n_k: int, cls: Callable[[bytes], Any]) -> None:
        self.id = aead_id
        self.n_k = n_k
        self.n_n = 12
        self.n_t = 16
        self._cls = cls

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        out: bytes = self._cls(key).encrypt(nonce, pt, aad)
        return out

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        try:
            out: bytes = self._cls(key).decrypt(nonce, ct, aad)
        except (InvalidTag, ValueError):
            raise DecryptionError("HPKE AEAD decryption failed") from None
        return out


_AEADS: dict[int, Aead] = {
    AEAD_AES128GCM: Aead(AEAD_AES128GCM, 16, AESGCM),
    AEAD_AES256GCM: Aead(AEAD_AES256GCM, 32, AESGCM),
    AEAD_CHACHA20POLY1305: Aead(AEAD_CHACHA20POLY1305, 32, ChaCha20Poly1305),
}


# --------------------------------------------------------------------------- HPKE


@dataclass
class Context:
    """The encryption context of §5.2: key, base_nonce, a sequence number, and the
    exporter secret. One Context is either a sender's or a recipient's."""

    aead: Aead
    labeled: _Labeled
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes
    seq: int = 0

    def _next_nonce(self) -> bytes:
        """ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn), then IncrementSeq (§5.2)."""
        if self.seq >= (1 << (8 * self.aead.n_n)) - 1:
            raise UsageError("HPKE message limit reached")
        nonce = (int.from_bytes(self.base_nonce, "big") ^ self.seq).to_bytes(
            self.aead.n_n, "big")
        return nonce

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        """ContextS.Seal(aad, pt)."""
        ct = self.aead.seal(self.key, self._next_nonce(), aad, pt)
        self.seq += 1
        return ct

    def open(self, aad: bytes, ct: bytes) -> bytes:
        """ContextR.Open(aad, ct); the sequence number advances only on success."""
        pt = self.aead.open(self.key, self._next_nonce(), aad, ct)
        self.seq += 1
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """Context.Export(exporter_context, L) (§5.3)."""
        return self.labeled.expand(self.exporter_secret, b"sec", exporter_context, length)


_NATIVE_KEMS = {KEM_P256: "P256", KEM_P384: "P384", KEM_P521: "P521", KEM_X25519: "X25519"}
_NATIVE_KDFS = {KDF_HKDF_SHA256: "HKDF_SHA256", KDF_HKDF_SHA384: "HKDF_SHA384",
                KDF_HKDF_SHA512: "HKDF_SHA512"}
_NATIVE_AEADS = {AEAD_AES128GCM: "AES_128_GCM", AEAD_AES256GCM: "AES_256_GCM",
                 AEAD_CHACHA20POLY1305: "CHACHA20_POLY1305"}

#: Largest ``info`` a batch seals natively: the native call hashes ``info`` for every
#: recipient, the batch here once for all (a Welcome's ``info`` holds the whole
#: encrypted GroupInfo, hundreds of KiB in a large group; an UpdatePath's is ~100 bytes).
NATIVE_BATCH_INFO_MAX = 1024


def native_suite(kem_id: int, kdf_id: int, aead_id: int) -> Any | None:
    """``cryptography``'s HPKE Suite for these algorithms, or None where it lacks one
    (X448, or a release without the module)."""
    if _native_hpke is None:
        return None
    names = (_NATIVE_KEMS.get(kem_id), _NATIVE_KDFS.get(kdf_id), _NATIVE_AEADS.get(aead_id))
    kem, kdf, aead = (getattr(kind, name, None) if name else None for kind, name in zip(
        (_native_hpke.KEM, _native_hpke.KDF, _native_hpke.AEAD), names, strict=True))
    if kem is None or kdf is None or aead is None:
        return None
    return _native_hpke.Suite(kem, kdf, aead)


class Hpke:
    """One HPKE ciphersuite (KEM, KDF, AEAD) in mode_base (RFC 9180 §5.1.1, §6.1).

    ``native=False`` keeps every operation in the code here (to check the two against
    each other)."""

    def __init__(self, kem_id: int, kdf_id: int, aead_id: int, *, native: bool = True) -> None:
        try:
            self.kem: DHKem = _KEMS[kem_id]
            self.kdf: Kdf = _KDFS[kdf_id]
            self.aead: Aead = _AEADS[aead_id]
        except KeyError:
            raise UnsupportedError("unsupported HPKE algorithm") from None
        suite_id = (b"HPKE" + kem_id.to_bytes(2, "big") + kdf_id.to_bytes(2, "big")
                    + aead_id.to_bytes(2, "big"))
        self._labeled = _Labeled(suite_id, self.kdf)
        # mode_base uses psk = psk_id = "" (§5.1), so mode || psk_id_hash is a constant
        psk_id_hash = self._labeled.extract(b"", b"psk_id_hash", b"")
        self._context_prefix = bytes((MODE_BASE,)) + psk_id_hash
        self._native = native_suite(kem_id, kdf_id, aead_id) if native else None

    @property
    def native(self) -> bool:
        """Whether single-shot seal/open go to ``cryptography``'s HPKE."""
        return self._native is not None

    def _native_seal(self, pk_r: bytes, info: bytes, pt: bytes) -> tuple[bytes, bytes]:
        assert self._native is not None
        public_r = self.kem._load_public(pk_r)  # CryptoError for an invalid key (§7.1.4)
        try:
            blob: bytes = self._native.encrypt(pt, public_r, info)
        except ValueError:  # e.g. a DH output of zero (§7.1.4)
            raise CryptoError("HPKE encapsulation failed") from None
        n = self.kem.n_enc
        return blob[:n], blob[n:]

    def _schedule_context(self, info: bytes) -> bytes:
        """mode || psk_id_hash || info_hash: the key_schedule_context (§5.1)."""
        return self._context_prefix + self._labeled.extract(b"", b"info_hash", info)

    def _secret(self, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
        """KeyScheduleBase up to ``secret``: returns (secret, key_schedule_context)."""
        context = self._schedule_context(info)
        return self._labeled.extract(shared_secret, b"secret", b""), context

    def _key_nonce(self, secret: bytes, context: bytes) -> tuple[bytes, bytes]:
        key = self._labeled.expand(secret, b"key", context, self.aead.n_k)
        nonce = self._labeled.expand(secret, b"base_nonce", context, self.aead.n_n)
        return key, nonce

    def _context(self, shared_secret: bytes, info: bytes) -> Context:
        """KeySchedule(mode_base, shared_secret, info, "", "") (§5.1)."""
        secret, context = self._secret(shared_secret, info)
        key, nonce = self._key_nonce(secret, context)
        exporter = self._labeled.expand(secret, b"exp", context, self.kdf.n_h)
        return Context(self.aead, self._labeled, key, nonce, exporter)

    def setup_base_s(self, pk_r: bytes, info: bytes,
                     ikm_e: bytes | None = None) -> tuple[bytes, Context]:
        """SetupBaseS(pkR, info) -> (enc, context) (§5.1.1)."""
        shared_secret, enc = self.kem.encap(pk_r, ikm_e)
        return enc, self._context(shared_secret, info)

    def setup_base_r(self, enc: bytes, sk_r: bytes, info: bytes) -> Context:
        """SetupBaseR(enc, skR, info) -> context (§5.1.1)."""
        return self._context(self.kem.decap(enc, sk_r), info)

    def seal_base(self, pk_r: bytes, info: bytes, aad: bytes, pt: bytes,
                  ikm_e: bytes | None = None) -> tuple[bytes, bytes]:
        """SealBase(pkR, info, aad, pt) -> (enc, ct) (§6.1). ``ikm_e`` (tests only) fixes
        the ephemeral key; the first message of a context uses base_nonce unchanged."""
        if self._native is not None and ikm_e is None and not aad:
            return self._native_seal(pk_r, info, pt)
        shared_secret, enc = self.kem.encap(pk_r, ikm_e)
        key, nonce = self._key_nonce(*self._secret(shared_secret, info))
        return enc, self.aead.seal(key, nonce, aad, pt)

    def seal_base_many(self, recipients: Sequence[tuple[bytes, bytes]], info: bytes,
                       aad: bytes) -> list[tuple[bytes, bytes]]:
        """SealBase to many (pkR, pt) pairs with one ``info``: the same as calling
        :meth:`seal_base` for each, but ``info`` (e.g. a Welcome's large
        encrypted_group_info) is hashed once, not once per recipient. A small ``info``
        (an UpdatePath's) goes to the native implementation, one call per recipient."""
        if self._native is not None and not aad and len(info) <= NATIVE_BATCH_INFO_MAX:
            return [self._native_seal(pk_r, info, pt) for pk_r, pt in recipients]
        context = self._schedule_context(info)
        out = []
        for pk_r, pt in recipients:
            shared_secret, enc = self.kem.encap(pk_r, None)
            secret = self._labeled.extract(shared_secret, b"secret", b"")
            key, nonce = self._key_nonce(secret, context)
            out.append((enc, self.aead.seal(key, nonce, aad, pt)))
        return out

    def open_base(self, enc: bytes, sk_r: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
        """OpenBase(enc, skR, info, aad, ct) -> pt (§6.1); DecryptionError on failure."""
        if self._native is not None and not aad:
            private_r = self.kem._load_private(sk_r)  # CryptoError, as in decap
            # The native call takes enc || ct and splits it at Nenc: check the split
            # here, or a shifted boundary between the two would be accepted.
            if len(enc) != self.kem.n_enc:
                raise DecryptionError("HPKE decapsulation failed")
            try:
                pt: bytes = self._native.decrypt(enc + ct, private_r, info)
            except (InvalidTag, ValueError):
                raise DecryptionError("HPKE decryption failed") from None
            return pt
        shared_secret = self.kem.decap(enc, sk_r)
        key, nonce = self._key_nonce(*self._secret(shared_secret, info))
        return self.aead.open(key, nonce, aad, ct)
