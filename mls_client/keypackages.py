"""The client's KeyPackage pool (RFC 9420 §10, RFC 9750 "KeyPackage reuse").

A client keeps ``pool_size`` one-use KeyPackages published and publishes more when fewer
than ``threshold`` remain. It also keeps one *last-resort* KeyPackage, which the Delivery
Service hands out only when no one-use KeyPackage is left and never deletes; it is
replaced once it has been used or after ``last_resort_rotation_days``. Private keys are
written to the database *before* a KeyPackage is published (so a Welcome can always be
opened), deleted when the KeyPackage is used, and the last-resort one when rotated.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.extensions import GROUP_NAME_EXTENSION, Extension, ExtensionType
from mls_core.framing import MLSMessage
from mls_core.key_package import create_key_package, default_capabilities
from mls_core.room_policy import ROOM_POLICY_EXTENSION
from transports.base import DeliveryTransport, KeyPackageEntry, TransportError

from .errors import NotFoundError
from .settings import DAY, Settings
from .store import Store, StoredKeyPackage

#: our leaves support the room policy and group name extensions, so groups may carry
#: them (§7.2, §12.1.7)
CAPABILITIES = default_capabilities(extensions=[ROOM_POLICY_EXTENSION, GROUP_NAME_EXTENSION])

log = logging.getLogger("mls_bridge.client")


def device_extensions(client_id: str) -> tuple[Extension, ...]:
    """The LeafNode extensions of every leaf this client makes: application_id = the
    client id (RFC 9420 §5.3.3), so that a device's leaf can be told from its user's
    other devices after the device lost its keys (recover and re-invite remove it)."""
    return (Extension(ExtensionType.APPLICATION_ID, client_id.encode()),)


def device_of(extensions: Sequence[Extension]) -> bytes | None:
    """The application_id among LeafNode extensions (None: a leaf without one)."""
    for ext in extensions:
        if ext.extension_type == ExtensionType.APPLICATION_ID:
            return ext.extension_data
    return None

#: ``progress(done, total)`` for long operations (CLI output)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PoolReport:
    """What :meth:`KeyPackagePool.maintain` did."""

    published: int
    remaining: int
    last_resort_rotated: bool
    expired: int
    #: KeyPackages of this client id published before its state was lost (their keys
    #: are gone), withdrawn from the Delivery Service before the new ones
    replaced: int = 0


#: reuse grace where the transport cannot claim atomically (KeyPackageSettings)
NON_ATOMIC_GRACE = 3600


def reuse_grace(settings: Settings, transport: DeliveryTransport) -> int:
    """Seconds a used one-use KeyPackage stays joinable (see KeyPackageSettings)."""
    configured = settings.key_packages.reuse_grace_seconds
    if configured is not None:
        return configured
    return 0 if getattr(transport, "atomic_claims", True) else NON_ATOMIC_GRACE


class KeyPackagePool:
    """Creates, publishes, rotates and prunes this client's KeyPackages."""

    def __init__(self, store: Store, transport: DeliveryTransport, settings: Settings,
                 user_id: str, client_id: str) -> None:
        self._store = store
        self._transport = transport
        self._settings = settings
        self._user_id = user_id
        self._client_id = client_id

    async def _generate(self, count: int, now: int, *, last_resort: bool,
                        progress: Progress | None) -> list[StoredKeyPackage]:
        suite_id = self._settings.cipher_suite
        keys = await self._store.signature_key(suite_id)
        if keys is None:
            raise NotFoundError(f"no signature key for cipher suite {suite_id}")
        suite = get_suite(suite_id)
        lifetime = self._settings.key_packages.lifetime_days * DAY
        credential = Credential.basic(self._user_id.encode())
        out = []
        for i in range(count):
            kp, private = create_key_package(suite, credential, keys[0], now=now,
                                             lifetime=lifetime, capabilities=CAPABILITIES,
                                             leaf_extensions=device_extensions(
                                                 self._client_id))
            out.append(StoredKeyPackage(
                ref=suite.make_key_package_ref(kp.encode()), suite=suite_id,
                key_package=MLSMessage.of(kp).encode(), init_priv=private.init_priv,
                encryption_priv=private.encryption_priv, last_resort=last_resort,
                published=False, used=False, created_at=now, not_after=now + lifetime))
            if progress is not None:
                progress(i + 1, count)
        return out

    async def _publish(self, kps: Sequence[StoredKeyPackage]) -> None:
        """Store the private keys, publish, then mark them published."""
        if not kps:
            return
        async with self._store.transaction() as tx:
            await tx.add_key_packages(kps)
        await self._transport.publish_key_packages(
            self._client_id, self._user_id,
            [KeyPackageEntry(kp.ref, kp.key_package, kp.last_resort) for kp in kps])
        async with self._store.transaction() as tx:
            await tx.mark_published(kp.ref for kp in kps)

    async def publish(self, count: int, now: int, *, progress: Progress | None = None) -> int:
        """Publish ``count`` new one-use KeyPackages."""
        await self._publish(await self._generate(count, now, last_resort=False,
                                                 progress=progress))
        return count

    async def rotate_last_resort(self, now: int) -> None:
        """Publish a new last-resort KeyPackage (it replaces the old one on the Delivery
        Service) and forget the old private keys (RFC 9750)."""
        old = [kp.ref for kp in await self._store.key_packages() if kp.last_resort]
        await self._publish(await self._generate(1, now, last_resort=True, progress=None))
        async with self._store.transaction() as tx:
            await tx.delete_key_packages(old)

    def _last_resort_due(self, kps: Sequence[StoredKeyPackage], now: int) -> bool:
        current = [kp for kp in kps if kp.last_resort and kp.published]
        if not current:
            return True
        newest = max(current, key=lambda kp: kp.created_at)
        age = now - newest.created_at
        return newest.used or age >= self._settings.key_packages.last_resort_rotation_days * DAY

    async def _retry_unpublished(self, kps: Sequence[StoredKeyPackage]) -> None:
        """KeyPackages stored but not known to be published (a crash in between):
        publish them one by one; one the service already has is just marked."""
        for kp in kps:
            if kp.published or kp.last_resort:
                continue
            with contextlib.suppress(TransportError):  # already there: crashed after it
                await self._transport.publish_key_packages(
                    self._client_id, self._user_id,
                    [KeyPackageEntry(kp.ref, kp.key_package, False)])
            async with self._store.transaction() as tx:
                await tx.mark_published([kp.ref])

    async def maintain(self, now: int, *, progress: Progress | None = None) -> PoolReport:
        """Prune expired KeyPackages, refill the pool below the threshold, rotate the
        last-resort KeyPackage when due."""
        kps = await self._store.key_packages()
        replaced = 0 if kps else await self.retract_stale()
        grace_end = now - reuse_grace(self._settings, self._transport)
        expired = [kp.ref for kp in kps if kp.not_after < now or (
            kp.used and not kp.last_resort and (kp.used_at or 0) <= grace_end)]
        if expired:
            async with self._store.transaction() as tx:
                await tx.delete_key_packages(expired)
        kps = [kp for kp in kps if kp.not_after >= now]
        await self._retry_unpublished(kps)
        remaining = await self._transport.key_package_count(self._client_id)
        cfg = self._settings.key_packages
        published = 0
        if remaining < cfg.threshold or remaining == 0:
            published = await self.publish(cfg.pool_size - remaining, now, progress=progress)
        rotated = self._last_resort_due(kps, now)
        if rotated:
            await self.rotate_last_resort(now)
        return PoolReport(published, remaining + published, rotated, len(expired), replaced)

    async def retract_stale(self) -> int:
        """Before this database publishes anything (it holds no KeyPackage, not even a
        last-resort one, which is never deleted): withdraw whatever the Delivery Service
        still holds for our client id. Those were published by a previous install of
        this device whose state was lost, so no Welcome to them can be opened
        (RFC 9750 "Recovery After State Loss"). A transport that cannot withdraw
        KeyPackages (no ``retract_key_packages``) returns 0."""
        retract = getattr(self._transport, "retract_key_packages", None)
        if retract is None:
            return 0
        count = int(await retract(self._client_id))
        if count:
            log.info("withdrew %d KeyPackage(s) of %s published before this device's "
                        "state was lost", count, self._client_id)
        return count


#: seconds between refills that claims of our KeyPackages trigger
REFILL_MIN_INTERVAL = 5.0
#: the window of the refill budget (``key_packages.max_refill_per_hour``)
REFILL_WINDOW = 3600.0


class ClaimWatch:
    """Refill the pool as soon as the Delivery Service reports that our KeyPackages are
    being claimed, within a budget (docs/security.md, "Inbound inventory").

    A transport that learns of claims (an XMPP claim notice it honoured, a fall of the
    Matrix one-time key count) increments its ``key_package_claims`` counter. When it
    moved, :meth:`due` says a refill is due (at most every ``REFILL_MIN_INTERVAL``
    seconds). Refills are budgeted: a stranger who drains the directory as fast as the
    server lets it must not make us generate and upload KeyPackages without bound, so
    past ``max_refill_per_hour`` one-use KeyPackages in an hour we stop topping up
    early, log a WARNING and count it; the periodic upkeep still runs, and the
    last-resort KeyPackage, which only its owner replaces, keeps the device addable.
    """

    def __init__(self, budget_per_hour: int,
                 clock: Callable[[], float]) -> None:
        self._budget = budget_per_hour
        self._clock = clock
        self._seen: int | None = None
        self._last_refill = float("-inf")
        #: (time, count) of refills in the budget window
        self._spent: deque[tuple[float, int]] = deque()
        self._warned_at = float("-inf")
        self.claims_seen = 0
        self.refills = 0
        self.refills_refused = 0

    def _spent_now(self, now: float) -> int:
        while self._spent and now - self._spent[0][0] >= REFILL_WINDOW:
            self._spent.popleft()
        return sum(n for _, n in self._spent)

    def due(self, transport: object) -> bool:
        """Whether the transport's claim counter moved since we last refilled and a
        refill is allowed now."""
        counter = getattr(transport, "key_package_claims", None)
        if not isinstance(counter, int) or isinstance(counter, bool):
            return False
        if self._seen is None:
            self._seen = counter
            return False
        if counter == self._seen:
            return False
        now = self._clock()
        if now - self._last_refill < REFILL_MIN_INTERVAL:
            return False
        self.claims_seen += max(0, counter - self._seen)
        self._seen = counter
        if self._spent_now(now) >= self._budget:
            self.refills_refused += 1
            if now - self._warned_at >= REFILL_WINDOW / 6:
                self._warned_at = now
                log.warning("our KeyPackages are claimed faster than %d an hour: early "
                            "refills paused (possible depletion attack); the last-resort "
                            "KeyPackage keeps this device addable", self._budget)
            return False
        self._last_refill = now
        return True

    def spent(self, published: int) -> None:
        """A claim-triggered refill published ``published`` one-use KeyPackages."""
        if published:
            self.refills += 1
            self._spent.append((self._clock(), published))
