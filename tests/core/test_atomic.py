"""Atomic writes leave either the old file or the complete new one, never a partial file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfleet.utils.atomic import atomic_open, atomic_path, write_json_atomic


def test_failed_write_keeps_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write('{"v": 2, "trunc')
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_atomic_path_keeps_suffix_and_cleans_up(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "vol.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"data")
    assert (tmp_path / "vol.nii.gz").read_bytes() == b"data"
    with pytest.raises(ValueError), atomic_path(tmp_path / "x.png") as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError
    assert not (tmp_path / "x.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.nii.gz"]


def test_atomic_files_get_normal_permissions(tmp_path: Path) -> None:
    import os

    write_json_atomic(tmp_path / "a.json", {})
    (tmp_path / "plain.json").write_text("{}")
    mode = os.stat(tmp_path / "a.json").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain.json").st_mode & 0o777
