"""Settings of the Matrix transport (the ``[matrix]`` table of the client settings).

Pydantic only: importable without matrix-nio, so settings validate on any install.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class MatrixSettings(BaseModel):
    """One Matrix device (a device of the user ``matrix:<user id>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: base URL of the homeserver, e.g. ``https://matrix.example.org``
    homeserver: str = Field(min_length=8)
    #: full user id, e.g. ``@alice:example.org``
    user_id: str = Field(pattern=r"^@[^:]+:.+$")
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_id: str | None = None

    @model_validator(mode="after")
    def _credentials(self) -> MatrixSettings:
        if self.password is None and self.access_token is None:
            raise ValueError("either password or access_token is required")
        return self
