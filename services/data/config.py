"""data's settings: the kit's shared settings, plus its MongoDB and where auth is (for its JWKS).
Every variable is in the README's configuration table."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import Settings, address_setting, port_setting, setting


@dataclass(frozen=True, kw_only=True)
class DataSettings(Settings):
    data_port: int = port_setting("data")
    auth_address: str = address_setting("auth")
    mongodb_url: str = setting("MONGODB_URL", "", secret=True)  # required: create_service says so
    mongodb_database: str = setting("MONGODB_DATABASE", "pinexa")
