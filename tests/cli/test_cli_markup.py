"""User text on the console is printed as written: brackets in it are never Rich markup."""

from __future__ import annotations

import pytest

from medfleet.cli.common import check_out_folder, literal, say
from medfleet.cli.progress import progress_bar

TRICKY = ["[/bold]x", "runs[v2]/pred", "[red]benign", "a[/]", "[bold]", "x\\[y]"]


@pytest.mark.parametrize("text", TRICKY)
def test_say_prints_text_exactly(capsys: pytest.CaptureFixture[str], text: str) -> None:
    say(f"wrote {text}/cases.csv")
    say(f"error in {text}", err=True, style="red")
    captured = capsys.readouterr()
    assert f"wrote {text}/cases.csv" in captured.out
    assert f"error in {text}" in captured.err


def test_say_keeps_a_long_path_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = "/" + "/".join(f"folder[{i}]" for i in range(30)) + "/cases.csv"
    say(f"wrote {path}")
    assert f"wrote {path}\n" in capsys.readouterr().out


@pytest.mark.parametrize("text", TRICKY)
def test_literal_is_plain_text(text: str) -> None:
    assert literal(text).plain == text
    assert literal(3).plain == "3"


@pytest.mark.parametrize("text", TRICKY)
def test_progress_bar_shows_a_description_with_brackets(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # paradigm/model names reach the bar: a clinical group is free text in the manifest
    with progress_bar(f"grouped/{text}") as update:
        update(1, 2)
        update(2, 2)
    assert f"grouped/{text}" in capsys.readouterr().err


def test_out_folder_check_accepts_new_and_existing_folders(tmp_path) -> None:
    check_out_folder(None)
    check_out_folder(tmp_path)
    check_out_folder(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # the check creates nothing
