"""Page sizes and opaque page tokens."""

from __future__ import annotations

import pytest

from services.kit.errors import InvalidArgument
from services.kit.pagination import decode_page_token, encode_page_token, page_size


def test_page_size_defaults_and_clamps() -> None:
    assert page_size(0) == 20
    assert page_size(7) == 7
    assert page_size(1000) == 100


def test_negative_page_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size(-1)
    assert caught.value.violations[0][0] == "page_size"


def test_token_round_trips_and_is_opaque() -> None:
    position = {"created_at": "2026-01-01T00:00:00+00:00", "id": "abc"}
    token = encode_page_token(position, scope="order=created_at")
    assert "created_at" not in token
    assert decode_page_token(token, scope="order=created_at") == position
    assert decode_page_token("", scope="anything") is None


def test_token_from_another_query_is_refused() -> None:
    token = encode_page_token({"id": "abc"}, scope='filter=status = "DRAFT"')
    with pytest.raises(InvalidArgument, match="different query"):
        decode_page_token(token, scope='filter=status = "PUBLISHED"')


@pytest.mark.parametrize("garbage", ["%%%", "bm90IGpzb24", "eyJ4IjogMX0"])
def test_malformed_token_is_invalid_argument(garbage: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(garbage)
    assert caught.value.violations[0][0] == "page_token"
