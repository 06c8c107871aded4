"""Self-contained HTML reports: sections of text, tables and static PNG figures.

A :class:`Report` is a title, a few header facts and a list of :class:`Section` objects,
each holding :class:`Text`, :class:`Table` and :class:`Figure` blocks. :func:`render_html`
turns it into one HTML file with inline CSS and every figure embedded as a base64 PNG, so
the file can be mailed, archived or opened offline. Nothing in it is interactive and
nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfleet.utils.atomic import write_text_atomic

__all__ = [
    "Figure",
    "Report",
    "Section",
    "Table",
    "Text",
    "format_value",
    "render_html",
    "write_report",
]


@dataclass
class Text:
    """A paragraph of plain text (escaped; ``warning=True`` highlights it)."""

    text: str
    warning: bool = False


@dataclass
class Table:
    """A table: column names and rows of values (numbers are formatted on rendering).

    Attributes:
        columns: Column headers.
        rows: One sequence of values per row.
        title: Optional caption above the table.
        note: Optional note below the table.
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    note: str = ""


@dataclass
class Figure:
    """A static figure: PNG bytes and a caption."""

    png: bytes
    title: str = ""
    caption: str = ""

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    """A titled part of a report."""

    title: str
    blocks: list[Text | Table | Figure] = field(default_factory=list)

    def add(self, block: Text | Table | Figure) -> Section:
        """Append a block; returns the section."""
        self.blocks.append(block)
        return self


@dataclass
class Report:
    """A whole report.

    Attributes:
        title: Page title.
        facts: Header facts shown as a key/value list (inputs, version, ...).
        sections: The sections, in order.
    """

    title: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Create, append and return a new section."""
        sec = Section(title)
        self.sections.append(sec)
        return sec


def format_value(value: Any, digits: int = 4) -> str:
    """A value for a table cell: numbers to ``digits`` significant digits, None as a dash.

    Example:
        >>> format_value(0.123456), format_value(float("inf")), format_value(None), format_value(3)
        ('0.1235', 'inf', '-', '3')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #335;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:2em;color:#335}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef;text-align:center}
td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
.note{color:#555;font-size:.85em;margin-top:-.8em}
.warn{background:#fff4e0;border-left:4px solid #e90;padding:.4em .8em}
figure{margin:1em 0}figcaption{color:#555;font-size:.85em}
img{max-width:100%;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}dd{margin:0}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ report.title }}</title>
<style>{{ css }}</style></head><body>
<h1>{{ report.title }}</h1>
{% if report.facts %}<dl>{% for key, value in report.facts.items() %}
<dt>{{ key }}</dt><dd>{{ fmt(value) }}</dd>{% endfor %}</dl>{% endif %}
{% for section in report.sections %}<h2>{{ section.title }}</h2>
{% for block in section.blocks %}{% if block.__class__.__name__ == "Text" %}
<p{% if block.warning %} class="warn"{% endif %}>{{ block.text }}</p>
{% elif block.__class__.__name__ == "Table" %}<table>{% if block.title %}
<caption>{{ block.title }}</caption>{% endif %}
<tr>{% for c in block.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in block.rows %}<tr>{% for v in row %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% if block.note %}<p class="note">{{ block.note }}</p>{% endif %}
{% else %}<figure>{% if block.title %}<figcaption><b>{{ block.title }}</b></figcaption>{% endif %}
<img src="{{ block.data_uri }}" alt="{{ block.title }}">
{% if block.caption %}<figcaption>{{ block.caption }}</figcaption>{% endif %}</figure>
{% endif %}{% endfor %}{% endfor %}
</body></html>
"""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (every text escaped).

    Example:
        >>> r = Report("Demo <run>", {"cases": 3})
        >>> _ = r.section("Summary").add(Table(["metric", "mean"], [["dice", 0.91234]]))
        >>> page = render_html(r)
        >>> "Demo &lt;run&gt;" in page, "0.9123" in page
        (True, True)
    """
    import jinja2
    import markupsafe

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    return template.render(report=report, css=markupsafe.Markup(_CSS), fmt=format_value)


def write_report(report: Report, path: str | Path) -> Path:
    """Render ``report`` and write it atomically to ``path``."""
    return write_text_atomic(path, render_html(report))
