"""Presentation: console tables, the JSON view, the markdown/HTML report and the frontier plot."""

from __future__ import annotations

from pathlib import Path

from netcut.results import ExploreResult


def write_report(result: ExploreResult, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html, frontier.png and depth.png into out_dir (atomically)."""
    from netcut.fsutil import write_atomic
    from netcut.report.markdown import markdown, to_html
    from netcut.report.plot import plot, plot_depth

    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(result, out_dir / "frontier.png")
    depth = plot_depth(result, out_dir / "depth.png")
    md = markdown(result)
    return {"markdown": write_atomic(out_dir / "report.md", md),
            "html": write_atomic(out_dir / "report.html", to_html(md, "netcut report")), "plot": png,
            "depth": depth}
