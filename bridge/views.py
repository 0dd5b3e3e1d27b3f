"""The bridge's verified view of a bridged group, and refusals (docs/bridge.md, "Who may
ask").

The bridge is not a member: it cannot check a GroupInfo (RFC 9420 §12.4.3) against the
group's secrets. It checks each one as a joiner would (§12.4.3.1: the signature by the
signer's leaf, the tree hash, the tree's validity, :func:`check_group_info`), binds it to
the network account that sent it (the signer must be that account), and keeps a chain of
them, the *view*:

* the first view is the GroupInfo of the account that asked to bridge the group (its
  *anchor*), at epoch 0 or at the hub's current epoch;
* a later one must be for the same group, of an epoch strictly newer than the view's
  and not beyond the hub's sequenced Commits (:meth:`OrderingHub.commit_epoch`), and
  signed by an identity that held a leaf in the view (a member that lost its state and
  rejoined by external Commit, §12.4.3.2, still held its stale leaf there).

Only members of the view may ask the bridge for anything about the group, and room bans
are enforced against the view's leaves, whatever strangers send.
"""

from __future__ import annotations

from mls_core.config import InputLimits
from transports.base import InvalidRequestError
from transports.group_info import CheckedGroupInfo, GroupInfoRejected, check_group_info

from .hub import View


class Refused(InvalidRequestError):
    """A request or relayed item the bridge will not act on; ``reason`` is a stable slug
    (counted and logged through :class:`transports.defence.Drops`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        #: what was refused, for the log line (a control op), when known
        self.kind: str | None = None


def checked(group_id: bytes, group_info: bytes, ratchet_tree: bytes | None,
            requester: str, *, limits: InputLimits | None = None) -> CheckedGroupInfo:
    """``group_info`` verified as a joiner would (§12.4.3.1) within ``limits``, for
    ``group_id``, signed by the leaf of ``requester`` (the account the network says
    sent it)."""
    try:
        info = check_group_info(group_id, group_info, ratchet_tree, writer=requester,
                                limits=limits)
    except GroupInfoRejected as exc:
        raise Refused(exc.reason, exc.detail) from None
    if info.signer != requester:  # unreachable: check_group_info binds them
        raise Refused("group-info-wrong-signer", f"signed by {info.signer!r}")
    return info


def as_view(group_id: bytes, info: CheckedGroupInfo) -> View:
    assert info.signer is not None  # checked() bound it to the requester
    return View(group_id, info.epoch, info.signer, info.members, info.group_info,
                info.ratchet_tree)


def first_view(group_id: bytes, info: CheckedGroupInfo, *, requester: str,
               anchor: str | None, current: int | None) -> View:
    """The group's first view, from the ``bridge`` request of ``requester``: it must be
    the group's anchor (when one is set) and the GroupInfo must be of epoch
    ``current`` (the hub's :meth:`~bridge.hub.OrderingHub.commit_epoch`; any epoch when
    the hub has sequenced no Commit of the group yet, e.g. epoch 0 of a new group)."""
    if anchor is not None and requester != anchor:
        raise Refused("not-a-member", "the group has no verified view and "
                                      f"{requester} is not the account that bridged it")
    if current is not None and info.epoch != current:
        raise Refused("group-info-not-current",
                      f"epoch {info.epoch}, the hub's epoch is {current}")
    return as_view(group_id, info)


def next_view(view: View, info: CheckedGroupInfo, *, bound: int) -> View | None:
    """The view after ``view`` given a newer checked GroupInfo; None when ``info`` is
    the view's own GroupInfo again (the same epoch and signer: a repeat). ``bound``:
    the hub's :meth:`~bridge.hub.OrderingHub.commit_epoch` since ``view``'s epoch."""
    if info.signer not in view.members:
        raise Refused("group-info-signer-not-member",
                      f"{info.signer!r} held no leaf at epoch {view.epoch}")
    if info.epoch == view.epoch and info.signer == view.signer:
        return None
    if info.epoch <= view.epoch:
        raise Refused("group-info-stale", f"epoch {info.epoch}, the view is at {view.epoch}")
    if info.epoch > bound:
        raise Refused("group-info-future",
                      f"epoch {info.epoch}, the hub sequenced Commits up to {bound}")
    return as_view(view.group_id, info)


def member(view: View | None, requester: str) -> View:
    """``view``, if ``requester`` holds a leaf in it; else :class:`Refused`."""
    if view is None:
        raise Refused("not-a-member", "the group has no verified view")
    if requester not in view.members:
        raise Refused("not-a-member", f"no leaf at epoch {view.epoch}")
    return view
