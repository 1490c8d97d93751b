"""One real installation per module (initialising one takes seconds) and the real app over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.http.app import create_app
from otward.services.bootstrap import initialize
from otward.services.pki import Pki


@dataclass
class Service:
    pki: Pki
    client: TestClient
    admin_token: str

    def certificate_count(self) -> int:
        response = self.client.get(
            "/api/v1/certificates",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code == 200, response.text
        return int(response.json()["total"])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("fuzz-http") / "data"
    initialize(data, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    pki = Pki.open(load_settings(data))
    with TestClient(create_app(pki), base_url="https://testserver", raise_server_exceptions=False) as client:
        yield Service(pki, client, (data / "admin.token").read_text().strip())
    pki.close()
