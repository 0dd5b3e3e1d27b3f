"""The ``mls_client.MLSClient`` service as the runner sees it.

Request and response classes come from the service descriptor of the generated module,
so every RPC is called by name with one generic stub. Messages are rendered for the
results JSON the way Go's plain JSON encoder renders the generated structs (RUNNER.md
§1.5): snake_case field names, zero values omitted, bytes as padded standard base64.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from google.protobuf import message_factory  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from interop.generated import mls_client_pb2

SERVICE = "mls_client.MLSClient"

#: grpc-go's names for the status codes whose Python name is not a plain CamelCase.
_GO_CODE_NAMES: Mapping[str, str] = {"CANCELLED": "Canceled", "OK": "OK"}
_LABEL_REPEATED = 3  # FieldDescriptor.LABEL_REPEATED


@dataclass(frozen=True)
class Rpc:
    """One method of the service: its full path and message classes."""

    name: str
    path: str
    #: called with the request's fields as keywords (the generated classes accept them;
    #: ``Message`` itself is typed without them in newer types-protobuf)
    request: Callable[..., Message]
    response: type[Message]


@cache
def rpc_table() -> Mapping[str, Rpc]:
    """Every RPC of the service by name, built from the generated descriptor."""
    service = mls_client_pb2.DESCRIPTOR.services_by_name["MLSClient"]
    return {
        method.name: Rpc(
            name=method.name,
            path=f"/{SERVICE}/{method.name}",
            request=message_factory.GetMessageClass(method.input_type),
            response=message_factory.GetMessageClass(method.output_type),
        )
        for method in service.methods
    }


def go_code_name(python_name: str) -> str:
    """``grpc.StatusCode.X.name`` to grpc-go's ``codes.Code.String()`` (RUNNER.md §7)."""
    if python_name in _GO_CODE_NAMES:
        return _GO_CODE_NAMES[python_name]
    return "".join(part.capitalize() for part in python_name.split("_"))


def field_int(message: Message, name: str) -> int:
    value = getattr(message, name)
    assert isinstance(value, int)
    return value


def field_str(message: Message, name: str) -> str:
    value = getattr(message, name)
    assert isinstance(value, str)
    return value


def field_ints(message: Message, name: str) -> list[int]:
    return [int(item) for item in getattr(message, name)]


def field_bytes(message: Message, name: str) -> bytes:
    value = getattr(message, name)
    assert isinstance(value, bytes)
    return value


def render(message: Message) -> dict[str, object]:
    """Render a message as Go's ``encoding/json`` renders the generated struct."""
    out: dict[str, object] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_repeated(field):
            if len(value):
                out[field.name] = [_render_value(item) for item in value]
        elif field.message_type is not None:
            if message.HasField(field.name):
                out[field.name] = render(value)
        elif value:
            out[field.name] = _render_value(value)
    return out


def _is_repeated(field: object) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 6; older ones only have ``label``
        return bool(field.is_repeated)
    return bool(getattr(field, "label", None) == _LABEL_REPEATED)


def _render_value(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Message):
        return render(value)
    return value
