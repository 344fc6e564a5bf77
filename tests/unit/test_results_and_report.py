"""Typed results survive the store's JSON; the JSON view and the markdown report render them as documented."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from netcut.report.markdown import markdown
from netcut.report.view import explore_json
from netcut.results import Deadline, ExploreResult
from netcut.search.config import ExploreConfig
from netcut.search.decide import decide
from netcut.types import Percentiles
from synthetic import candidate, probe, result

A = [candidate("a", i, 1.0 + i) for i in range(5)]
B = [candidate("b", i, 2.0 * (i + 1)) for i in range(5)]


@pytest.fixture
def explored():
    records = [probe(A[3], 0.80, 0.79), probe(A[4], 0.85, 0.84), probe(B[1], 0.90, 0.88, run=2),
               probe(B[4], 0.95, 0.93)]
    tight = decide(Deadline(0.5), A + B, [], records, {})
    mid = decide(Deadline(6.0, margin=0.0), A + B, [A[3], A[4], B[1]], records,
                 {B[1].id: Percentiles(6.4, 7.0, 7.5), A[4].id: Percentiles(4.9, 5.1, 5.3)})
    return result(A + B, records, (tight, mid), run_id=2)


def test_result_round_trips_through_json(explored):
    again = ExploreResult.from_json(json.loads(json.dumps(explored.to_json())))
    assert again == explored
    assert again.decision(6.0).chosen.record.key == explored.decision(6.0).chosen.record.key


def test_counts_come_from_the_records(explored):
    assert explored.trained == 4 and explored.newly_trained == 1  # only B[1]'s record was made by run 2
    assert explored.infeasible


def test_json_view_keeps_the_documented_fields(explored):
    data = explore_json(explored)
    assert [d["deadline_ms"] for d in data["deadlines"]] == [0.5, 6.0]
    tight, mid = data["deadlines"]
    assert tight["chosen"] is None and tight["fastest"] == "a@blocks.0" and tight["fastest_ms"] == 1.0
    assert "reason" in tight
    chosen = mid["chosen"]
    for field in ("model", "cut", "accuracy", "latency_ms", "latency_p90_ms", "estimated_ms", "score", "metric",
                  "fine_tune_blocks", "backend", "precision"):
        assert field in chosen, field
    assert (chosen["model"], chosen["cut"], chosen["latency_ms"], chosen["accuracy"]) == ("a", "blocks.4", 4.9, 0.84)
    assert mid["rejected_on_verification"] == [{"model": "b", "cut": "blocks.1", "measured_ms": 6.4, "ram_mb": None,
                                                "estimated_ms": 4.0}]
    assert mid["proposals"] == ["a@blocks.3", "a@blocks.4", "b@blocks.1"]
    rows = {(r["model"], r["cut"]): r for r in mid["candidates"]}
    assert rows[("a", "blocks.3")]["trained"] and rows[("a", "blocks.3")]["accuracy"] == 0.79
    assert not rows[("a", "blocks.0")]["trained"] and "accuracy" not in rows[("a", "blocks.0")]
    assert rows[("b", "blocks.3")]["feasible"] is False and rows[("b", "blocks.2")]["feasible"] is True
    assert data["trained"] == 4 and data["newly_trained"] == 1 and data["candidates_total"] == 10
    # b@blocks.1 (4 ms, 0.88) dominates a@blocks.3 (4 ms) and a@blocks.4 (5 ms, 0.84)
    assert [(p["model"], p["cut"]) for p in data["frontier"]] == [("b", "blocks.1"), ("b", "blocks.4")]
    single = explore_json(result(A + B, explored.records, (explored.decisions[1],)))
    assert single["deadline_ms"] == 6.0 and "deadlines" not in single and single["chosen"]["cut"] == "blocks.4"


def test_markdown_report_shows_choice_gain_rejection_and_frontier(explored):
    md = markdown(explored)
    assert ("| 6 ms | a | blocks.4 (full) | onnxruntime fp32 | 0.8400 | 0.8500 | 4.90 ms | 5.10 ms | 5.00 ms | "
            "0.02 MB | – | a 0.8400 | +0.00% |") in md
    assert "rejected: b@blocks.1 (onnxruntime fp32) measured 6.40 ms (estimated 4.00)" in md
    assert "| 0.5 ms | none: no candidate's estimated latency meets the deadline (fastest a@blocks.0: 1.00 ms)" in md
    assert "## Pareto frontiers" in md and "### onnxruntime, fp32" in md
    assert "| b (off-the-shelf) | blocks.4 | 10.00 ms | 0.02 MB | – | 0.9300 |" in md
    assert "- 6 ms: a@blocks.3, a@blocks.4, b@blocks.1" in md
    assert "![accuracy against latency](frontier.png)" in md
    assert "int8 against fp32" not in md  # an fp32-only run has nothing to compare
    # this run (2) trained one of the four records; the time of the three it reused is said apart
    assert ("exploration: this run 12.5 s; it reused 3 of 4 trained networks from earlier runs of this run "
            "directory, whose training took 3.0 s") in md


def test_config_round_trips_and_derives_the_training_configs():
    config = ExploreConfig(models=("a", "b"), deadlines=(5.0, 8.0), head_hidden=32, epochs=7, seed=3)
    again = ExploreConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    assert again.train_config().head.hidden == 32 and again.train_config().epochs == 7
    settings = again.profile_settings(4, "litert", "int8")
    assert again.split_config().seed == 3 and settings.num_classes == 4
    assert (settings.backend, settings.precision) == ("litert", "int8")


def test_int8_candidates_report_their_accuracy_change_and_where_int8_is_slower():
    fp32 = [candidate("a", i, 1.0 + i) for i in range(5)]
    int8 = [candidate("a", i, 1.2 + i if i < 2 else 0.5 + i, precision="int8") for i in range(5)]
    records = [probe(fp32[3], 0.80, 0.80), probe(int8[3], 0.78, 0.77), probe(int8[4], 0.8, 0.79)]
    decision = decide(Deadline(20.0), fp32 + int8, [fp32[3], int8[3], int8[4]], records, {}, verify=False)
    explored = result(fp32 + int8, records, (decision,))
    rows = {(r["cut"], r["precision"]): r for r in explore_json(explored)["candidates"]}
    row = rows[("blocks.3", "int8")]
    assert row["fp32_accuracy"] == 0.80 and row["accuracy_change_vs_fp32"] == pytest.approx(-0.03)
    assert row["size_mb"] == pytest.approx(rows[("blocks.3", "fp32")]["size_mb"] / 4)
    assert "fp32_accuracy" not in rows[("blocks.3", "fp32")]
    md = markdown(explored)
    assert "int8 is estimated slower than fp32 for 2 of 5 candidates" in md
    assert "| a | blocks.3 | onnxruntime | 4.00 ms | 3.50 ms | 1.14x | 0.02 MB | 0.00 MB | 0.8000 | 0.7700 |" in md
    assert "### onnxruntime, int8" in md and "### onnxruntime, fp32" in md


def test_several_devices_get_a_frontier_each_from_their_own_estimates(tmp_path):
    from dataclasses import replace

    from netcut.report.plot import plot
    from netcut.search.pareto import device_frontiers

    fast, slow = candidate("m", 1, 1.0), candidate("m", 2, 2.0)
    both = [replace(fast, per_device={"a:1": Percentiles(1.0, 1.1, 1.2), "b:2": Percentiles(3.0, 3.3, 3.6)}),
            replace(slow, per_device={"a:1": Percentiles(2.0, 2.2, 2.4), "b:2": Percentiles(2.5, 2.7, 3.0)})]
    records = [probe(both[0], 0.7), probe(both[1], 0.8)]
    fronts = device_frontiers(both, records)
    assert set(fronts) == {"a:1", "b:2"}
    on_a = [c.cut.name for c, _ in fronts["a:1"][("onnxruntime", "fp32")]]
    on_b = [c.cut.name for c, _ in fronts["b:2"][("onnxruntime", "fp32")]]
    assert on_a == ["blocks.1", "blocks.2"] and on_b == ["blocks.2"]  # on b the shallower cut is slower and worse
    assert device_frontiers([fast, slow], records) == {}  # one device: nothing extra
    assert plot(result(both, records), tmp_path / "f.png").stat().st_size > 1000


def test_close_calls_reach_the_json_the_report_and_the_console(explored):
    from rich.console import Console

    from netcut.report.console import print_result

    # b@blocks.1 validates best and is measured 3.2% over a 6.2 ms deadline: a second run may well keep it
    close = decide(Deadline(6.2, margin=0.0), A + B, [A[4], B[1]], list(explored.records),
                   {B[1].id: Percentiles(6.4, 7.0, 7.5), A[4].id: Percentiles(4.9, 5.1, 5.3)})
    shown = result(A + B, explored.records, (explored.decisions[1], close))
    far, near = explore_json(shown)["deadlines"]
    assert far["close_calls"] == []
    assert near["close_calls"] == [{"model": "b", "cut": "blocks.1", "backend": "onnxruntime", "precision": "fp32",
                                    "kind": "rejected", "latency_ms": 6.4,
                                    "distance_pct": pytest.approx(100 * (6.4 / 6.2 - 1))}]
    md = markdown(shown)
    assert "close call: b@blocks.1 (measured latency only just missed it: +3.2%)" in md
    assert "A close call is a latency within 5% of the deadline" in md
    assert "close call" not in markdown(explored)  # nothing near an edge, no note
    out = Console(record=True, width=200)
    print_result(out, shown)
    assert "close call at 6.2 ms: b@blocks.1 (measured latency only just missed it: +3.2%)" in out.export_text()


def test_the_page_holds_the_tables_its_data_and_no_reference_outside_it(explored):
    from netcut.report.interactive import interactive_html, page_data

    page = interactive_html(explored, [])
    assert page.count("<table>") == 3 and page.count("<table class=\"facts\">") == 1  # static tables, choice panel
    assert "frontier.png" not in page and "depth.png" not in page  # nothing outside the page
    markup = re.sub(r"<script.*?</script>", "", page, flags=re.S)  # Plotly's code names URLs it never loads here
    assert "<script" in page and not re.search(r"(src|href)=[\"']?(https?:)?//", markup)
    # list items inside their list, as CommonMark writes them
    assert page.index("<ul>") < page.index("<li>") < page.index("</ul>")
    start = page.index("id='netcut-data'>") + len("id='netcut-data'>")
    data = json.loads(page[start:page.index("</script>", start)])
    assert data == json.loads(json.dumps(page_data(explored, [])))
    explored_at = {e["deadline_ms"]: e for e in data["explored"]}
    assert explored_at[6.0]["chosen"]["cut"] == "blocks.4" and explored_at[6.0]["status"] == "verified"
    assert explored_at[0.5]["chosen"] is None and explored_at[0.5]["status"] == "none"
    assert [r["label"] for r in explored_at[6.0]["rejected"]] == ["b@blocks.1"]
    hover = next(p["hover"] for p in data["points"] if p["candidate"].startswith("b|blocks.4|"))
    assert "<b>b</b> @ blocks.4 (off-the-shelf)" in hover and "test 0.9300" in hover and "size 0.02 MB" in hover


def test_text_that_closes_a_script_cannot_end_the_data_block(explored):
    from netcut.report.interactive import interactive_html

    hostile = replace(explored, dataset=replace(explored.dataset, name="x</script><script>alert(1)</script>"))
    page = interactive_html(hostile, [])
    assert "alert(1)</script>" not in page.split("id='netcut-data'>", 1)[1].split("</script>", 1)[0]
    assert page.count("<script>alert(1)") == 0 and page.count("&lt;script&gt;alert(1)") >= 1  # escaped


def test_a_report_without_its_charting_libraries_says_how_to_install_them(explored, tmp_path, monkeypatch):
    import importlib.util

    from netcut.errors import NetcutError
    from netcut.report import write_report

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a))
    with pytest.raises(NetcutError, match="plotly") as caught:
        write_report(explored, tmp_path / "report")
    assert "netcut[report]" in str(caught.value.hint) and not (tmp_path / "report").exists()
