"""What a cell of crmd's text output shows: local times, and plain aligned columns for long
lists (`crmd tasks`), with no box drawing.

Rich lays out every cell of a table before printing its first line, which for a
specialist's list of thousands of tasks takes longer than the query and all of crmd's start
together. A list needs less: each column as wide as its widest cell (Chinese characters
count two columns, as a terminal draws them), a header, and on a terminal colour for what
needs attention and the widest column cut to the screen's width.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from crmd.site import Site

GAP = "  "


def local_time(t: datetime | None, site: Site) -> str:
    """A time as people read it: the site's local time, to the minute."""
    return "" if t is None else t.astimezone(site.timezone).strftime("%Y-%m-%d %H:%M")


def iso_time(t: datetime | None, site: Site) -> str | None:
    """A time for scripts: ISO-8601 in the site's zone, with its offset."""
    return None if t is None else t.astimezone(site.timezone).isoformat()


@dataclass(frozen=True)
class Cell:
    """One cell's text, with a colour for a terminal (none when output goes to a pipe) and,
    optionally, a second line shown under it (e.g. a warning under a task's title)."""

    text: str
    colour: str | None = None
    below: str = ""
    below_colour: str | None = None


def width(text: str) -> int:
    """The columns a terminal gives this text: wide (CJK) characters take two."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def cut(text: str, columns: int) -> str:
    """The text shortened to at most `columns` columns, ending in '…' when it was cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        w = width(c)
        if used + w > columns - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def pad(text: str, columns: int) -> str:
    return text + " " * (columns - width(text))


def print_columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell | str]],
    *,
    stretch: int | None = None,
    terminal: bool | None = None,
) -> None:
    """Print rows under headers, each column as wide as its widest cell.

    `stretch`: the index of the column that gives way on a narrow terminal (its cells are
    cut with '…'); when output goes to a pipe or a file nothing is cut, so a script or Excel
    gets every character.
    """
    if terminal is None:
        terminal = sys.stdout.isatty()
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    widths = [width(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], width(c.text), width(c.below))
    if terminal and stretch is not None:
        screen = shutil.get_terminal_size().columns
        others = sum(w for i, w in enumerate(widths) if i != stretch) + len(GAP) * (len(widths) - 1)
        widths[stretch] = max(width(headers[stretch]), min(widths[stretch], screen - others))
    last = len(headers) - 1

    def line(texts: Sequence[str], colours: Sequence[str | None], bold: bool = False) -> str:
        parts = []
        for i, (text, colour) in enumerate(zip(texts, colours, strict=True)):
            if terminal and width(text) > widths[i]:
                text = cut(text, widths[i])
            shown = text if i == last else pad(text, widths[i])
            if terminal and (colour or bold):
                shown = click.style(shown, fg=colour, bold=bold)
            parts.append(shown)
        return GAP.join(parts).rstrip()

    out = [line(headers, [None] * len(headers), bold=True), GAP.join("-" * w for w in widths)]
    for row in cells:
        out.append(line([c.text for c in row], [c.colour for c in row]))
        if any(c.below for c in row):
            out.append(line([c.below for c in row], [c.below_colour for c in row]))
    click.echo("\n".join(out), color=terminal)
