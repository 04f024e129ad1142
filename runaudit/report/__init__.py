"""Weekly reports: :mod:`~runaudit.report.data` (polars frames), :mod:`~runaudit.report.charts` (matplotlib,
imported lazily), :mod:`~runaudit.report.render` (Markdown, self-contained HTML) and
:mod:`~runaudit.report.write`, which writes one week's files."""

from runaudit.report.write import FORMATS, ReportResult, write_report

__all__ = ["write_report", "ReportResult", "FORMATS"]
