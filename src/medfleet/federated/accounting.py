"""Bytes on the wire: the size of a Flower message as Flower serialises it.

Flower (1.42) sends a message as a tree of deflated objects (the message, its record dict,
records, arrays and array chunks); :func:`message_bytes` sums the deflated size of every
object in that tree, i.e. what the transport carries for this message.
"""

from __future__ import annotations

from typing import Any


def message_bytes(message: Any) -> int:
    """Serialised size in bytes of a Flower ``Message`` (all objects of its tree).

    Example:
        >>> import numpy as np
        >>> from flwr.app import ArrayRecord, Array, RecordDict, Message, Error
        >>> from flwr.supercore.task_identity import TaskIdentity
        >>> TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
        >>> small = Message(RecordDict({"a": ArrayRecord({"w": Array(np.ones(10, "f4"))})}),
        ...                 dst_node_id=2, message_type="train")
        >>> big = Message(RecordDict({"a": ArrayRecord({"w": Array(np.ones(1000, "f4"))})}),
        ...               dst_node_id=2, message_type="train")
        >>> message_bytes(big) - message_bytes(small) >= 990 * 4
        True
    """
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    objects = get_all_nested_objects(message)
    return int(sum(len(obj.deflate()) for obj in objects.values()))
