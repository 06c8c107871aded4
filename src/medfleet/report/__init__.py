"""Static, self-contained HTML reports (tables and PNG figures) shared by medfleet's verbs.

The rendering layer only: it knows nothing of evaluations, federated runs or monitors,
which build their reports from these parts (the evaluation's ``report.html`` is
:mod:`medfleet.evaluate.runner.report`, the comparison of two runs
:mod:`medfleet.evaluate.compare`).

* :mod:`medfleet.report.html`: the generic building blocks (:class:`Report`,
  :class:`Section`, :class:`Table`, :class:`Figure`, :class:`Text`) and the renderer.
* :mod:`medfleet.report.plots`: matplotlib figures as PNG bytes (box plots, subgroup bars
  with sizes, reliability diagram, Bland-Altman).

Example:
    >>> from medfleet.report import Report, Table, render_html
    >>> r = Report("Example")
    >>> _ = r.section("Numbers").add(Table(["name", "value"], [["a", 1.5]]))
    >>> "<td>1.5</td>" in render_html(r)
    True
"""

from medfleet.report.html import Figure, Report, Section, Table, Text, render_html, write_report

__all__ = ["Figure", "Report", "Section", "Table", "Text", "render_html", "write_report"]
