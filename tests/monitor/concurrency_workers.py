"""Child processes of the concurrency tests: each runs its own service app on a shared store.

Run through ``multiprocessing`` with the ``spawn`` start method, so each child is a fresh
interpreter with its own store connection, coordinator and agents, like a second
``medfleet monitor serve`` process on the same database.
"""

from __future__ import annotations

from typing import Any

from monitor_service_helpers import KEYS, batch_body, config, headers


def post_same_batches(target: str, n_batches: int, barrier: Any, results: Any, worker: int) -> None:
    """Post batches ``b00 .. b{n-1}`` of site_a, each after every worker reached the barrier."""
    from fastapi.testclient import TestClient

    from medfleet.monitor.service import ServiceSettings, create_app

    settings = ServiceSettings(load_config_references=False)
    answers = []
    try:
        with TestClient(create_app(target, config(), KEYS, settings)) as client:
            for i in range(n_batches):
                barrier.wait(timeout=120)
                r = client.post(
                    "/sites/site_a/batches",
                    json=batch_body(f"b{i:02d}", seed=500 + i),
                    headers=headers("site_a"),
                )
                body = r.json()
                answers.append((i, r.status_code, body.get("duplicate"), body.get("statistic")))
    except BaseException as err:  # report it to the parent instead of hanging it
        barrier.abort()
        results.put((worker, f"{type(err).__name__}: {err}"))
        raise
    results.put((worker, answers))


ADAPTIVE = {
    "scheme": "adaptive",
    "adaptive": {"mode": "window", "window": 2, "warmup": 1, "initial": "site"},
}


def own_batch(worker: int, i: int) -> dict:
    """Worker ``worker``'s batch ``i`` of site_a (its own id; later batches drift a little)."""
    return batch_body(f"w{worker}-{i:02d}", seed=1000 * worker + i, shift=0.2 * i)


def post_own_batches(target: str, n_batches: int, barrier: Any, results: Any, worker: int) -> None:
    """Post this worker's own batches of site_a, each as the other worker posts one of its own."""
    from fastapi.testclient import TestClient

    from medfleet.monitor.service import ServiceSettings, create_app

    settings = ServiceSettings(load_config_references=False)
    answers = []
    try:
        with TestClient(create_app(target, config(**ADAPTIVE), KEYS, settings)) as client:
            for i in range(n_batches):
                barrier.wait(timeout=120)
                r = client.post(
                    "/sites/site_a/batches", json=own_batch(worker, i), headers=headers("site_a")
                )
                answers.append((i, r.status_code, r.text[:300]))
    except BaseException as err:
        barrier.abort()
        results.put((worker, f"{type(err).__name__}: {err}"))
        raise
    results.put((worker, answers))
