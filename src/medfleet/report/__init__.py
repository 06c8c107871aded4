"""Static, self-contained HTML reports (tables and PNG figures) shared by medfleet's verbs.

* :mod:`medfleet.report.html`: the generic building blocks (:class:`Report`,
  :class:`Section`, :class:`Table`, :class:`Figure`, :class:`Text`) and the renderer.
* :mod:`medfleet.report.plots`: matplotlib figures as PNG bytes (box plots, subgroup bars
  with sizes, reliability diagram, Bland-Altman).
* :mod:`medfleet.report.evaluation`: the ``report.html`` of ``medfleet evaluate``.
* :mod:`medfleet.report.compare`: paired comparison of two evaluation runs
  (``medfleet report compare``).

Example:
    >>> from medfleet.report import Report, Table, render_html
    >>> r = Report("Example")
    >>> _ = r.section("Numbers").add(Table(["name", "value"], [["a", 1.5]]))
    >>> "<td>1.5</td>" in render_html(r)
    True
"""

from medfleet.report.html import Figure, Report, Section, Table, Text, render_html, write_report

__all__ = ["Figure", "Report", "Section", "Table", "Text", "render_html", "write_report"]
