"""The input bounds a transport holds in its settings (docs/security.md, "Bounds").

A transport checks every GroupInfo it reads from the network as a joiner would (RFC 9420
§12.4.3.1, :func:`transports.group_info.check_group_info`), so the same
:class:`~mls_core.config.InputLimits` that bound a join bound those checks.
:data:`LimitsField` is the pydantic type of the ``limits`` field of the transports'
settings: a table of InputLimits' fields, whose invalid values are validation errors
(not the :class:`~mls_core.errors.UsageError` that InputLimits itself raises).
``mls_client`` and the bridge fill it from their ``[limits]`` section.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidatorFunctionWrapHandler, WrapValidator

from mls_core.config import InputLimits
from mls_core.errors import UsageError


def _validated(value: Any, handler: ValidatorFunctionWrapHandler) -> InputLimits:
    """``value`` as InputLimits; a bound InputLimits refuses is a ValueError."""
    try:
        limits: InputLimits = handler(value)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    return limits


#: InputLimits validated as a settings table
LimitsField = Annotated[InputLimits, WrapValidator(_validated)]

__all__ = ["LimitsField"]
