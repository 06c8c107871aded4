"""The service on PostgreSQL: a database that goes away answers 503 without its password."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient
from monitor_service_helpers import KEYS, batch_body, config, headers, reference_outputs
from store_targets import store_target

from medfleet.monitor.service import create_app


def test_a_lost_database_answers_503_and_hides_the_password(tmp_path) -> None:
    with store_target("postgres", tmp_path) as url:
        password = sa.engine.make_url(url).password
        app = create_app(url, config(), KEYS)
        with TestClient(app) as client:
            health = client.get("/healthz").json()
            assert health["status"] == "ok"
            assert password not in str(health) and ":***@" in health["db"]
            r = client.post(
                "/sites/site_a/reference",
                json={"outputs": reference_outputs(seed=0)},
                headers=headers("site_a"),
            )
            assert r.status_code == 201
            store = app.state.monitor.store
            gone = sa.engine.make_url(url).set(port=1)
            store._engine.dispose()
            store._engine = sa.create_engine(gone, connect_args={"connect_timeout": 2})
            r = client.post(
                "/sites/site_a/batches", json=batch_body("b1", seed=1), headers=headers("site_a")
            )
            assert r.status_code == 503, r.text
            assert r.json()["field"] == "db"
            assert password not in r.text and "Traceback" not in r.text
            assert client.get("/sites/site_a/history").status_code == 503
