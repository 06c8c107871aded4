"""An in-process Flower ``Grid``: the ServerApp talks to ClientApps called in this process.

Flower 1.42's simulation runtime needs Ray, whose start-up costs tens of seconds on a small
machine. :class:`LocalGrid` implements Flower's ``Grid`` interface directly: every message
the ServerApp sends is handed to the real ClientApp (with its mods) in a worker thread, with
the node's own ``Context`` (``node_config`` carries the site), one node after the other so
that runs are reproducible. Messages and replies go through Flower's protobuf serialisation
(each side gets its own copy, as on the wire). An exception escaping the ClientApp
(medfleet's handlers never let one escape; a client mod might) becomes an error reply
built as Flower's runtimes build it (``"<class '...'>:<'message'>"``), and a node that
does not answer within ``timeout``
seconds (counted per node, since nodes run one after the other) gets no reply. The
strategy, the ClientApp and the ServerApp are the ones the Ray simulation and the
deployment engine run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SUPERLINK_NODE_ID = 1
CLIENT_APP_RAISED_EXCEPTION = 2


class LocalGrid(Grid):
    """Run ClientApps in this process, one node per entry of ``node_configs``.

    Args:
        client_app: The Flower ClientApp.
        node_configs: Node id -> node config (e.g. ``{"site": "site_a"}``).
        run_config: The run configuration every context sees.
        run_id: The run id.
        available: Called before each round's sampling; returns the node ids currently
            connected (default: all). Lets drills disconnect and reconnect nodes.

    Example:
        >>> from flwr.clientapp import ClientApp
        >>> grid = LocalGrid(ClientApp(), {5: {"site": "a"}})
        >>> list(grid.get_node_ids())
        [5]
    """

    def __init__(
        self,
        client_app: Any,
        node_configs: dict[int, dict[str, Any]],
        run_config: dict[str, Any] | None = None,
        run_id: int = 1,
        available: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts = {
            node: Context(
                run_id=run_id,
                node_id=node,
                node_config=dict(config),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node, config in node_configs.items()
        }
        self.available = available
        self._replies: dict[str, Message] = {}
        self._pending: dict[str, Message] = {}
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def set_run(self, run: Run) -> None:
        """Set the run."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A message from the server to ``dst_node_id``."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """Connected nodes."""
        if self.available is not None:
            return [n for n in self.available() if n in self.contexts]
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Queue messages (they run when pulled)."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            self._pending[message.metadata.message_id] = message
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Replies ready for ``message_ids`` (runs the queued messages first)."""
        return self._deliver(list(message_ids), None)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver each message to its node and collect the replies before ``timeout``."""
        ids = list(self.push_messages(messages))
        return self._deliver(ids, timeout)

    def _deliver(self, ids: list[str], timeout: float | None) -> list[Message]:
        replies = []
        for message_id in ids:
            if message_id in self._replies:
                replies.append(self._replies.pop(message_id))
                continue
            message = self._pending.pop(message_id, None)
            if message is None:
                continue
            reply = self._call(message, timeout)
            if reply is not None:
                replies.append(reply)
        return replies

    def _call(self, message: Message, timeout: float | None) -> Message | None:
        node = message.metadata.dst_node_id
        context = self.contexts.get(node)
        if context is None:
            return None
        # The transport hands the node its own copy (as serialisation does): the server may
        # reuse and change its records for later rounds.
        message = message_from_proto(message_to_proto(message))
        box: dict[str, Message] = {}

        def work() -> None:
            try:
                reply = self.client_app(message, context)
                box["reply"] = message_from_proto(message_to_proto(reply))
            except Exception as exc:  # the ClientApp failed: an error reply, as Flower does
                reason = str(type(exc)) + ":<'" + str(exc) + "'>"
                box["reply"] = Message(
                    Error(code=CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message
                )

        thread = threading.Thread(target=work, name=f"clientapp-{node}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            return None
        return box.get("reply")
