"""Presentation: console tables, the JSON view, the markdown report, the interactive HTML page and the figures."""

from __future__ import annotations

from pathlib import Path

from netcut.results import ExploreResult


def write_report(result: ExploreResult, out_dir: Path, run_dir: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.html (interactive, self-contained), frontier.png and depth.png into out_dir
    (atomically). With the run directory, the page also knows every verification stored there."""
    import importlib.util

    from netcut.errors import NetcutError
    from netcut.fsutil import write_atomic
    from netcut.paths import store_path
    from netcut.report.interactive import interactive_html
    from netcut.report.markdown import markdown
    from netcut.report.plot import plot, plot_depth
    from netcut.store import ResultStore

    missing = [m for m in ("matplotlib", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise NetcutError(f"the report needs {' and '.join(missing)}, which is not installed",
                          "pip install 'netcut[report]' (or pass --no-report to explore)")
    verified = []
    if run_dir is not None and store_path(run_dir).is_file():
        with ResultStore(run_dir) as store:
            verified = store.latencies_of("verified")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(result, out_dir / "frontier.png")
    depth = plot_depth(result, out_dir / "depth.png")
    return {"markdown": write_atomic(out_dir / "report.md", markdown(result)),
            "html": write_atomic(out_dir / "report.html", interactive_html(result, verified)), "plot": png,
            "depth": depth}
