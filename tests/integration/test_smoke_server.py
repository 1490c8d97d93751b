import pytest

pytestmark = pytest.mark.integration


def test_server_answers_health_and_rejects_missing_token(server):
    with server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        response = client.get("/api/v1/certificates", headers={"Authorization": ""})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
