from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from trading.models import Asset


@pytest.mark.django_db
def test_home_page_says_how_to_connect(client: Client, make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL")
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "market of 1 symbol (" in body
    assert 'url_override="http://testserver"' in body
    assert 'href="/v2/docs"' in body
