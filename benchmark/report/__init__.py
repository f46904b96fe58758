"""Comparative report from MLflow: tables with CIs and tests, plots, verdicts (``rnnbench report``).

Modules, one job each: ``collect`` (MLflow -> tidy tables), ``tables`` (per-task model table),
``verdicts``, ``plots``, ``render`` (Markdown/HTML), ``build`` (assembly), ``screenshot``
(headless-Chromium check of the HTML). The statistics live in ``benchmark.decide``.
"""

from benchmark.report.build import attach_report, build_report

__all__ = ["attach_report", "build_report"]
