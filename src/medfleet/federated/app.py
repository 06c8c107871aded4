"""The Flower app objects that ``flwr run`` loads (declared in pyproject.toml).

``[tool.flwr.app.components]`` names ``medfleet.federated.app:serverapp`` and
``medfleet.federated.app:clientapp``; both read the job from the run configuration
(``job`` = a ``job.json``, or ``manifest`` + ``out`` + flat keys) and each SuperNode's
``node-config`` names its ``site`` (and optionally its ``state-dir``).
"""

from __future__ import annotations

from medfleet.federated.client_app import make_client_app
from medfleet.federated.server_app import make_server_app

clientapp = make_client_app()
serverapp = make_server_app()
