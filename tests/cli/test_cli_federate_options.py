"""``medfleet federate`` option parsing that needs no training."""

from __future__ import annotations

import pytest
import typer

from medfleet.cli.federate import _shared_heads


def test_shared_heads_all_none_and_names():
    assert _shared_heads(None) is None
    assert _shared_heads(" All ") == ["*"]
    assert _shared_heads("none") == []
    assert _shared_heads("seg, cls,") == ["seg", "cls"]


def test_shared_heads_without_a_name_is_a_usage_error():
    with pytest.raises(typer.Exit) as info:
        _shared_heads(" , ")
    assert info.value.exit_code == 2
