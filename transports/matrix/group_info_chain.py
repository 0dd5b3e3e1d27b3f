"""Continuity of a room's published GroupInfo: moved to :mod:`transports.group_info_chain`
(shared with the XMPP transport); this name stays for existing importers."""

from __future__ import annotations

from transports.group_info_chain import MAX_PENDING, Chain, Link

__all__ = ["MAX_PENDING", "Chain", "Link"]
