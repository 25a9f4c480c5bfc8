"""Opaque page tokens and page sizes for keyset pagination (AIP-158).

A token carries the sort key of the last row returned, plus a fingerprint of the query it
belongs to, so a token reused with a different filter or order is refused rather than
silently giving a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from services.kit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """0 means the default; above the maximum is clamped; negative is an error."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", [("page_size", "must be 0 or more")])
    if requested == 0:
        return default
    return min(requested, maximum)


def _fingerprint(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_page_token(position: dict[str, Any], *, scope: str = "") -> str:
    """An opaque token for `position` (the last row's sort key), bound to `scope`."""
    payload = json.dumps({"p": position, "s": _fingerprint(scope)}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def malformed_page_token() -> InvalidArgument:
    """The error for a page token this API did not issue (or a client edited)."""
    return InvalidArgument(
        "page_token is not a token this API returned", [("page_token", "malformed page token")]
    )


def decode_page_token(token: str, *, scope: str = "") -> dict[str, Any] | None:
    """The position in `token`, or None for the first page. INVALID_ARGUMENT when malformed."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        position = payload["p"]
        fingerprint = payload["s"]
    except (ValueError, KeyError, TypeError):
        raise malformed_page_token() from None
    if not isinstance(position, dict) or fingerprint != _fingerprint(scope):
        raise InvalidArgument(
            "page_token belongs to a different query",
            [("page_token", "does not match this query's filter or order")],
        )
    return position
