"""Plain aligned columns (crmd.cli.columns), as `crmd tasks` prints them: widths that count
Chinese characters as two columns, nothing cut in a pipe, the title cut on a narrow screen,
and colour only on a terminal."""

from __future__ import annotations

import re

import pytest

from crmd.cli.columns import Cell, cut, print_columns, width


def test_width_counts_wide_characters_twice() -> None:
    assert width("abc") == 3
    assert width("售后回访") == 8
    assert width("杨伟 A1") == 7
    assert width("e\u0301") == 1  # a combining accent takes no column


def test_cut_keeps_within_the_columns_and_says_so() -> None:
    assert cut("售后回访 杨伟艳", 20) == "售后回访 杨伟艳"
    assert cut("售后回访 杨伟艳", 6) == "售后…"
    assert width(cut("售后回访 杨伟艳", 6)) <= 6
    assert cut("abcdef", 4) == "abc…"


def rows() -> list[list[Cell | str]]:
    return [
        ["1", Cell("售后回访 杨伟艳 粤A13226", below="⚠ made late", below_colour="yellow"), "open"],
        ["22", "交车关怀", Cell("OVERDUE", colour="red")],
    ]


def test_columns_line_up_by_display_width_in_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    print_columns(("id", "title", "status"), rows(), stretch=1, terminal=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "title", "status"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    # Both status cells start at the same screen column, whatever the title's script.
    assert width(lines[2][: lines[2].index("open")]) == width(lines[4][: lines[4].index("OVERDUE")])
    assert lines[3].strip() == "⚠ made late"  # the second line sits under its cell
    assert width(lines[3][: lines[3].index("⚠")]) == width(lines[2][: lines[2].index("售")])
    assert "\x1b[" not in "".join(lines)  # no colour codes in a pipe


def test_nothing_is_cut_in_a_pipe_however_narrow_the_screen(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    print_columns(("id", "title", "status"), rows(), stretch=1, terminal=False)
    assert "售后回访 杨伟艳 粤A13226" in capsys.readouterr().out


def test_a_terminal_cuts_the_stretch_column_to_the_screen_and_colours(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    print_columns(("id", "title", "status"), rows(), stretch=1, terminal=True)
    out = capsys.readouterr().out
    assert "售后回访 杨伟艳 粤A13226" not in out
    assert "…" in out
    assert "\x1b[31m" in out  # OVERDUE in red
    plain = [_strip(line) for line in out.splitlines()]
    assert max(width(line) for line in plain) <= 30


def _strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
