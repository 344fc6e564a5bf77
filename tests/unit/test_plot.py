"""The frontier figure: its latency axis fits the candidates, a far deadline is marked at the edge, and fine-tuned
and int8 networks are told apart from probes."""

from __future__ import annotations

import pytest

from netcut.report.plot import figure, plot
from netcut.results import Deadline
from netcut.search.decide import decide
from synthetic import candidate, probe, result

pytest.importorskip("matplotlib", reason="netcut[report] is installed by `make test`")

A = [candidate("a", i, 1.0 + i) for i in range(5)]
Q = [candidate("a", i, 0.6 + i, precision="int8") for i in range(5)]


def _result(*deadlines: float):
    records = [probe(A[1], 0.70), probe(A[3], 0.80), probe(A[4], 0.85), probe(A[3], 0.86, blocks=-1),
               probe(Q[3], 0.79)]
    decisions = tuple(decide(Deadline(ms, margin=0.0), A + Q, A + Q, records, {}) for ms in deadlines)
    return result(A + Q, records, decisions)


def test_a_far_deadline_does_not_stretch_the_latency_axis():
    import matplotlib.pyplot as plt

    fig = figure(_result(4.5, 1e6))
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert 1.5 <= low <= 2.0 and 5.0 <= high <= 6.0  # the trained candidates: 2-5 ms with a margin, not a million
    texts = [t.get_text() for t in ax.texts]
    assert "1e+06 ms →" in texts and " 4.5 ms" in texts  # the far one at the edge, the near one at its place
    labels = ax.get_legend_handles_labels()[1]
    assert {"a probe fp32", "a fine-tuned fp32", "a probe int8", "chosen"} <= set(labels)
    plt.close(fig)


def test_the_figure_is_written(tmp_path):
    path = plot(_result(4.5), tmp_path / "frontier.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
