"""HPKE, RFC 9180, in mode_base: the public-key encryption MLS uses (RFC 9420 §5.1.3).

Only what MLS needs, but all of it for every MLS cipher suite: DHKEM (§4.1) over P-256
(0x0010), P-384 (0x0011), P-521 (0x0012), X25519 (0x0020) and X448 (0x0021) with
DeriveKeyPair (§7.1.3), HKDF-SHA256/384/512 (KDF ids 1/2/3), AES-128-GCM, AES-256-GCM and
ChaCha20-Poly1305 (AEAD ids 1/2/3), the mode_base key schedule (§5.1), the encryption
context (§5.2) and single-shot seal/open (§6.1). Beside the DH KEMs, the post-quantum KEMs
of draft-ietf-hpke-pq: ML-KEM-768 (0x0041), ML-KEM-1024 (0x0042) and X-Wing (0x647a),
with private keys as seeds and DeriveKeyPair chosen by profile (:data:`KEM_PROFILES`);
single-shot seal/open go to ``cryptography``'s hpke.Suite as for the DH KEMs, the key
schedule here serves everything else (exporter, AAD, large-info batches; docs/pq.md).

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
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
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


class Kem:
    """A KEM of RFC 9180 §4 over serialized byte keys: what :class:`Hpke` needs of one.

    Implemented by :class:`DHKem` (§4.1) and by the post-quantum KEMs of
    draft-ietf-hpke-pq (:class:`MlKem`, :class:`XWing`)."""

    id: int
    n_secret: int
    n_enc: int
    n_pk: int
    n_sk: int

    def _load_private(self, sk: bytes) -> Any:
        raise NotImplementedError

    def _load_public(self, pk: bytes) -> Any:
        raise NotImplementedError

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (SerializePrivateKey(sk), SerializePublicKey(pk))."""
        raise NotImplementedError

    def public_key(self, sk: bytes) -> bytes:
        """SerializePublicKey(pk(DeserializePrivateKey(sk)))."""
        raise NotImplementedError

    def validate_public_key(self, pk: bytes) -> None:
        """Raise CryptoError unless ``pk`` is a valid serialized public key."""
        self._load_public(pk)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """GenerateKeyPair() as serialized (private, public) key bytes."""
        return self.derive_key_pair(os.urandom(self.n_sk))

    def native_public(self, pk: bytes) -> Any:
        """The key object ``cryptography``'s hpke.Suite takes for ``pk``; CryptoError
        for an invalid key (§7.1.4)."""
        return self._load_public(pk)

    def native_private(self, sk: bytes) -> Any:
        """The key object ``cryptography``'s hpke.Suite takes for ``sk``."""
        return self._load_private(sk)

    def encap(self, pk_r: bytes, ikm_e: bytes | None = None) -> tuple[bytes, bytes]:
        """Encap(pkR) -> (shared_secret, enc)."""
        raise NotImplementedError

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        """Decap(enc, skR) -> shared_secret; DecryptionError if ``enc`` is invalid."""
        raise NotImplementedError


class DHKem(Kem):
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


# --------------------------------------------------------------------------- PQ KEMs
#
# draft-ietf-hpke-pq: ML-KEM-768 (0x0041), ML-KEM-1024 (0x0042) and X-Wing, i.e.
# MLKEM768-X25519 (0x647a, draft-connolly-cfrg-xwing-kem). Private keys are seeds: the
# 64-byte d || z of FIPS 203 for ML-KEM, the 32-byte X-Wing seed. The KEM operations
# come from ``cryptography`` (ML-KEM encapsulate/decapsulate, X25519); X-Wing's combiner
# is written out here. ``cryptography`` cannot encapsulate with supplied randomness, so
# an ``ikm_e`` for these KEMs is refused (UnsupportedError).

KEM_MLKEM768 = 0x0041
KEM_MLKEM1024 = 0x0042
KEM_XWING = 0x647A

#: DeriveKeyPair profiles of the PQ KEMs. ``hpke-pq``: draft-ietf-hpke-pq's
#: LabeledDerive over SHAKE256. ``ts-mls``: what ts-mls 1.6.4 does (and so what its PQ
#: MLS suites need): for ML-KEM the 64-byte ikm is the seed itself, for X-Wing the seed is
#: SHAKE256(ikm, 32) as in the X-Wing draft's own derivation.
PROFILE_HPKE_PQ = "hpke-pq"
PROFILE_TS_MLS = "ts-mls"
KEM_PROFILES = (PROFILE_HPKE_PQ, PROFILE_TS_MLS)

#: XWingLabel (draft-connolly-cfrg-xwing-kem §5.3): the ASCII string \.//^\
XWING_LABEL = b"\\.//^\\"


def labeled_derive_shake256(suite_id: bytes, ikm: bytes, label: bytes, context: bytes,
                            length: int) -> bytes:
    """LabeledDerive(ikm, label, context, L) with SHAKE256 (draft-ietf-hpke-hpke §4,
    used by draft-ietf-hpke-pq's DeriveKeyPair): SHAKE256(ikm || "HPKE-v1" || suite_id ||
    I2OSP(len(label), 2) || label || I2OSP(L, 2) || context, L)."""
    if not 0 <= length <= 0xFFFF or len(label) > 0xFFFF:
        raise UsageError("LabeledDerive length out of range")
    data = (ikm + HPKE_VERSION + suite_id + len(label).to_bytes(2, "big") + label
            + length.to_bytes(2, "big") + context)
    return hashlib.shake_256(data).digest(length)


class _PqKem(Kem):
    """Shared parts of the PQ KEMs: DeriveKeyPair by profile, key loading by seed."""

    def __init__(self, kem_id: int, profile: str, n_pk: int, n_enc: int, n_sk: int) -> None:
        if profile not in KEM_PROFILES:
            raise UnsupportedError(f"unknown PQ KEM profile {profile!r}")
        self.id = kem_id
        self.profile = profile
        self.n_secret = 32
        self.n_pk = n_pk
        self.n_enc = n_enc
        self.n_sk = n_sk
        self._suite_id = b"KEM" + kem_id.to_bytes(2, "big")

    def _seed_from_ikm(self, ikm: bytes) -> bytes:
        """The private key (seed) DeriveKeyPair makes of ``ikm`` under this profile."""
        if self.profile == PROFILE_HPKE_PQ:
            # draft-ietf-hpke-pq: seed = LabeledDerive(ikm, "DeriveKeyPair", "", Nsk)
            return labeled_derive_shake256(self._suite_id, ikm, b"DeriveKeyPair", b"",
                                           self.n_sk)
        return self._ts_mls_seed(ikm)

    def _ts_mls_seed(self, ikm: bytes) -> bytes:
        raise NotImplementedError

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (seed, SerializePublicKey(pk)) under this KEM's profile."""
        sk = self._seed_from_ikm(ikm)
        return sk, self.public_key(sk)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """GenerateKeyPair(): a fresh random seed."""
        sk = os.urandom(self.n_sk)
        return sk, self.public_key(sk)

    def _no_fixed_randomness(self, ikm_e: bytes | None) -> None:
        if ikm_e is not None:
            raise UnsupportedError(
                "cryptography cannot encapsulate to a PQ KEM with supplied randomness")


class MlKem(_PqKem):
    """ML-KEM-768 / ML-KEM-1024 (FIPS 203) as an HPKE KEM (draft-ietf-hpke-pq §3):
    Nsk = 64 (the seed d || z), Nsecret = 32; SerializePublicKey is the encapsulation key,
    enc the ciphertext."""

    def __init__(self, kem_id: int, profile: str, priv_cls: Any, pub_cls: Any,
                 n_pk: int, n_enc: int) -> None:
        super().__init__(kem_id, profile, n_pk, n_enc, 64)
        self._priv = priv_cls
        self._pub = pub_cls

    def _ts_mls_seed(self, ikm: bytes) -> bytes:
        # ts-mls hands the 64-byte ikm (an MLS node secret of a SHA-512 KDF) to
        # ML-KEM.KeyGen as d || z; any other length is not a key it could derive.
        if len(ikm) != self.n_sk:
            raise CryptoError(f"ts-mls ML-KEM DeriveKeyPair needs a {self.n_sk}-byte ikm")
        return bytes(ikm)

    def _load_private(self, sk: bytes) -> Any:
        if len(sk) != self.n_sk:
            raise CryptoError("invalid HPKE private key")
        try:
            return self._priv.from_seed_bytes(sk)
        except ValueError:
            raise CryptoError("invalid HPKE private key") from None

    def _load_public(self, pk: bytes) -> Any:
        if len(pk) != self.n_pk:
            raise CryptoError("invalid HPKE public key")
        try:
            return self._pub.from_public_bytes(pk)
        except ValueError:  # e.g. a coefficient not reduced mod q (FIPS 203 §7.2)
            raise CryptoError("invalid HPKE public key") from None

    def public_key(self, sk: bytes) -> bytes:
        out: bytes = self._load_private(sk).public_key().public_bytes_raw()
        return out

    def encap(self, pk_r: bytes, ikm_e: bytes | None = None) -> tuple[bytes, bytes]:
        """Encap(pkR) = ML-KEM.Encaps(pkR) -> (shared_secret, ct)."""
        self._no_fixed_randomness(ikm_e)
        ss, ct = self._load_public(pk_r).encapsulate()
        return bytes(ss), bytes(ct)

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        """Decap(enc, skR) = ML-KEM.Decaps(dk, enc) (implicit rejection: a forged ``enc``
        yields an unrelated secret, and the AEAD then fails)."""
        private = self._load_private(sk_r)
        if len(enc) != self.n_enc:
            raise DecryptionError("HPKE decapsulation failed")
        try:
            ss: bytes = private.decapsulate(enc)
        except ValueError:
            raise DecryptionError("HPKE decapsulation failed") from None
        return bytes(ss)


class XWing(_PqKem):
    """X-Wing, the ML-KEM-768 + X25519 hybrid (draft-connolly-cfrg-xwing-kem), HPKE KEM
    0x647a: sk is a 32-byte seed, expanded by SHAKE256 to 96 bytes (ML-KEM seed d || z,
    then the X25519 scalar); pk = pk_M || pk_X (1216 bytes), enc = ct_M || ct_X (1120);
    ss = SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)."""

    _N_PK_M = 1184
    _N_CT_M = 1088

    def __init__(self, profile: str) -> None:
        super().__init__(KEM_XWING, profile, 1216, 1120, 32)

    def _ts_mls_seed(self, ikm: bytes) -> bytes:
        return hashlib.shake_256(ikm).digest(32)

    def _expand(self, sk: bytes) -> tuple[Any, x25519.X25519PrivateKey]:
        if len(sk) != self.n_sk:
            raise CryptoError("invalid HPKE private key")
        expanded = hashlib.shake_256(sk).digest(96)
        return (mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
                x25519.X25519PrivateKey.from_private_bytes(expanded[64:]))

    def _load_private(self, sk: bytes) -> Any:
        return self._expand(sk)

    def _load_public(self, pk: bytes) -> Any:
        if len(pk) != self.n_pk:
            raise CryptoError("invalid HPKE public key")
        try:
            return (mlkem.MLKEM768PublicKey.from_public_bytes(pk[:self._N_PK_M]),
                    x25519.X25519PublicKey.from_public_bytes(pk[self._N_PK_M:]))
        except ValueError:
            raise CryptoError("invalid HPKE public key") from None

    def public_key(self, sk: bytes) -> bytes:
        private_m, private_x = self._expand(sk)
        out: bytes = (private_m.public_key().public_bytes_raw()
                      + private_x.public_key().public_bytes_raw())
        return out

    def native_public(self, pk: bytes) -> Any:
        if _native_hpke is None:  # pragma: no cover - native_suite is None then
            raise UnsupportedError("cryptography has no hpke module")
        return _native_hpke.MLKEM768X25519PublicKey(*self._load_public(pk))

    def native_private(self, sk: bytes) -> Any:
        if _native_hpke is None:  # pragma: no cover
            raise UnsupportedError("cryptography has no hpke module")
        return _native_hpke.MLKEM768X25519PrivateKey(*self._expand(sk))

    @staticmethod
    def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
        return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()

    def encap(self, pk_r: bytes, ikm_e: bytes | None = None) -> tuple[bytes, bytes]:
        """X-Wing Encapsulate(pk) -> (ss, ct_M || ct_X)."""
        self._no_fixed_randomness(ikm_e)
        public_m, public_x = self._load_public(pk_r)
        ss_m, ct_m = public_m.encapsulate()
        ephemeral = x25519.X25519PrivateKey.generate()
        ct_x = ephemeral.public_key().public_bytes_raw()
        try:
            ss_x = ephemeral.exchange(public_x)
        except ValueError:  # a small-order X25519 part of the recipient's key
            raise CryptoError("HPKE encapsulation failed") from None
        return self._combine(ss_m, ss_x, ct_x, pk_r[self._N_PK_M:]), bytes(ct_m) + ct_x

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        """X-Wing Decapsulate(ct, sk) -> ss."""
        private_m, private_x = self._expand(sk_r)
        if len(enc) != self.n_enc:
            raise DecryptionError("HPKE decapsulation failed")
        ct_m, ct_x = enc[:self._N_CT_M], enc[self._N_CT_M:]
        try:
            ss_m = private_m.decapsulate(ct_m)
            ss_x = private_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
        except ValueError:
            raise DecryptionError("HPKE decapsulation failed") from None
        pk_x = private_x.public_key().public_bytes_raw()
        return self._combine(ss_m, ss_x, ct_x, pk_x)


_PQ_KEMS: dict[tuple[int, str], Kem] = {}
for _profile in KEM_PROFILES:
    _PQ_KEMS[(KEM_MLKEM768, _profile)] = MlKem(
        KEM_MLKEM768, _profile, mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184, 1088)
    _PQ_KEMS[(KEM_MLKEM1024, _profile)] = MlKem(
        KEM_MLKEM1024, _profile, mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey,
        1568, 1568)
    _PQ_KEMS[(KEM_XWING, _profile)] = XWing(_profile)


def get_kem(kem_id: int, profile: str = PROFILE_HPKE_PQ) -> Kem:
    """The KEM for ``kem_id``; ``profile`` picks the PQ KEMs' DeriveKeyPair (ignored for
    the DH KEMs). Raises UnsupportedError for an unknown KEM or profile."""
    kem: Kem | None = _KEMS.get(kem_id)
    if kem is None:
        kem = _PQ_KEMS.get((kem_id, profile))
    if kem is None:
        raise UnsupportedError("unsupported HPKE algorithm")
    return kem


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


_NATIVE_KEMS = {KEM_P256: "P256", KEM_P384: "P384", KEM_P521: "P521", KEM_X25519: "X25519",
                KEM_MLKEM768: "MLKEM768", KEM_MLKEM1024: "MLKEM1024",
                KEM_XWING: "MLKEM768_X25519"}
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
    (X448, or a release without the module). The PQ KEMs (ML-KEM-768/1024, X-Wing) are
    there in release 51; their DeriveKeyPair and exporter stay ours."""
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
    each other). ``kem_profile`` picks DeriveKeyPair for the PQ KEMs (see
    :data:`KEM_PROFILES`)."""

    def __init__(self, kem_id: int, kdf_id: int, aead_id: int, *, native: bool = True,
                 kem_profile: str = PROFILE_HPKE_PQ) -> None:
        self.kem: Kem = get_kem(kem_id, kem_profile)
        try:
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
        public_r = self.kem.native_public(pk_r)  # CryptoError for an invalid key (§7.1.4)
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
            private_r = self.kem.native_private(sk_r)  # CryptoError, as in decap
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
