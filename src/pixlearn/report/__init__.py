"""report.html: everything a run directory holds, in one self-contained page (see `page`).

>>> from pixlearn.report.page import write_report
>>> write_report("runs/demo")          # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from pixlearn.report.page import render_report, run_kind, write_report

__all__ = ["render_report", "run_kind", "write_report"]
