"""The answer is readable in any terminal: each chosen network's identity (model, cut, runtime, precision) is printed
in full at 60, 80, 120 and 200 columns, as a block per deadline below 120 columns and as a table above."""

from __future__ import annotations

import pytest
from rich.console import Console

from netcut.report.console import WIDE, print_result
from netcut.results import Deadline
from netcut.search.decide import decide
from netcut.types import Percentiles
from synthetic import candidate, probe, result

# names as long as real ones: a timm backbone, a deep cut
LONG = [candidate("timm:efficientformerv2_s0.snap_dist_in1k", i, 1.0 + i) for i in range(5)]
LITE = [candidate("efficientnet_lite1", i, 2.0 * (i + 1), backend="openvino", precision="int8") for i in range(5)]


def _explored():
    records = [probe(LONG[3], 0.80, 0.96), probe(LONG[4], 0.85, 0.84), probe(LITE[1], 0.90, 0.88),
               probe(LITE[4], 0.95, 0.93), probe(LITE[1], 0.91, 0.89, blocks=-1)]
    candidates = LONG + LITE
    decisions = tuple(decide(Deadline(ms, margin=0.0), candidates, candidates, records,
                             {c.id: Percentiles(c.estimate.p50, c.estimate.p50, c.estimate.p50) for c in candidates})
                      for ms in (4.5, 5.0, 20.0))
    return result(candidates, records, decisions)


def _render(width: int) -> str:
    out = Console(record=True, width=width, file=open("/dev/null", "w"))  # noqa: SIM115 - closed with the console
    print_result(out, _explored())
    return out.export_text()


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_every_chosen_network_is_named_in_full(width):
    text = _render(width)
    explored = _explored()
    chosen = [d.chosen for d in explored.decisions]
    assert all(c is not None for c in chosen) and len({c.candidate.id for c in chosen}) >= 2
    flat = " ".join(text.split())  # a block may wrap between words; never inside one
    for c in chosen:
        assert c.model in text and c.cut in text, (width, c.model, c.cut, text)
        assert f"{c.candidate.id.backend} {c.candidate.id.precision}" in flat
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_narrow_terminals_get_blocks_and_wide_ones_a_table():
    assert "the choice per deadline" not in _render(WIDE - 1)
    assert "the choice per deadline" in _render(200)


def test_the_choice_is_said_to_be_made_on_validation_when_another_beats_it_on_test():
    text = " ".join(_render(200).split())
    # at 20 ms lite1's full network validates best (0.95, test 0.93), while the long model's cut 3 validates at
    # 0.80 and scores 0.96 on test: said, with both scores
    assert "validation split (75 images)" in text
    assert ("20 ms: timm:efficientformerv2_s0.snap_dist_in1k @ blocks.3 test 0.9600, validation 0.8000 (the choice: "
            "test 0.9300, validation 0.9500)") in text
