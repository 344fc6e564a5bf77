"""The interactive report in a real browser (Debian's chromium through chromedriver, network off): the deadline
slider's choice equals `netcut explore --deadline D --json` on the same run, hover texts, filters and sorting work, no
request leaves the page; screenshots at two widths go to build/screenshots."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

MODELS = "efficientnet_lite0,torchvision:mobilenet_v3_small"
SMALL = ["--data", "digits", "--input-size", "32", "--limit-train", "300", "--limit-test", "150", "--repeats", "5",
         "--warmup", "2", "--threads", "1", "--epochs", "15", "--precision", "fp32,int8", "--calibration-images",
         "64", "--strategy", "exhaustive"]
SCREENSHOTS = ROOT / "build" / "screenshots"


def explore(run_dir: Path, deadlines: str) -> dict:
    result = run_cli("explore", "--models", MODELS, "--run-dir", str(run_dir), *SMALL, "--deadline", deadlines,
                     "--json", "--no-report")
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An exhaustive exploration (every candidate trained, fp32 and int8) explored at two deadlines, and its page."""
    run_dir = tmp_path_factory.mktemp("page")
    first = explore(run_dir, "1000")
    admissions = sorted(r["estimated_ms"] * 1.05 for r in first["candidates"])
    explored = [admissions[len(admissions) // 3], admissions[2 * len(admissions) // 3]]
    data = explore(run_dir, ",".join(f"{d:.4f}" for d in explored))
    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    return run_dir, data, run_dir / "report" / "report.html"


@pytest.fixture(scope="module")
def browser():
    """Headless chromium, offline, logging every network request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium is missing: run `make test` as root, or sudo apt-get install -y chromium " \
                              "chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    yield chrome
    chrome.quit()


@pytest.fixture(scope="module")
def page(browser, run):
    _, _, html = run
    browser.get(html.as_uri())
    return browser


def set_deadline(browser, ms: float) -> dict:
    """Type a deadline into the page and read what it shows."""
    box = browser.find_element("id", "deadline-input")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", box,
                           repr(ms))
    return shown(browser)


def shown(browser) -> dict:
    def text(element_id: str) -> str:
        return browser.find_element("id", element_id).text

    runtime = text("choice-runtime")
    return {"model": text("choice-model"), "cut": text("choice-cut"), "runtime": runtime.split(",")[0],
            "status": text("choice-status"), "notes": text("choice-notes")}


def page_data(browser) -> dict:
    return browser.execute_script("return JSON.parse(document.getElementById('netcut-data').textContent)")


def test_the_slider_chooses_what_the_cli_chooses_at_every_tested_deadline(page, run):
    run_dir, data, _ = run
    explored = [d["deadline_ms"] for d in data["deadlines"]]
    steps = page_data(page)["steps"]
    chosen_steps = [s for s in steps if s["chosen"] is not None and s["high"] is not None]
    assert len(chosen_steps) >= 3
    # inside steps with a choice (between and beyond the explored deadlines), and the explored ones themselves
    picks = [chosen_steps[i] for i in sorted({0, len(chosen_steps) // 2, len(chosen_steps) - 1})]
    between = [math.sqrt(s["low"] * s["high"]) if s["low"] > 0 else s["high"] / 2 for s in picks]
    between = [d for d in between if all(abs(d / e - 1) > 1e-6 for e in explored)]
    assert any(explored[0] < d < explored[1] for d in between) or len(between) >= 2
    on_page = {d: set_deadline(page, d) for d in explored + between}
    for d in explored:
        assert on_page[d]["status"].startswith("verified at this deadline")
    for d in between:
        assert not on_page[d]["status"].startswith("verified")
    cli = explore(run_dir, ",".join(repr(d) for d in explored + between))
    assert cli["newly_trained"] == 0  # the store answers: nothing is retrained
    by_deadline = {d["deadline_ms"]: d for d in cli["deadlines"]}
    for d, seen in on_page.items():
        answer = by_deadline[d]
        chosen = answer["chosen"] or {"model": None, "cut": None}
        if (seen["model"], seen["cut"]) != (chosen["model"], chosen["cut"]):
            # the page said it was an estimate; only a measurement the page could not know may decide otherwise
            assert seen["status"].startswith("estimated, not verified")
            rejected = {(r["model"], r["cut"]) for r in answer["rejected_on_verification"]}
            assert (seen["model"], seen["cut"]) in rejected, (d, seen, answer["chosen"], rejected)
            continue
        assert seen["runtime"] == f"{chosen['backend']} {chosen['precision']}"


def test_a_deadline_below_every_estimate_chooses_nothing(page, run):
    _, data, _ = run
    fastest = min(r["estimated_ms"] for r in data["deadlines"][0]["candidates"])
    seen = set_deadline(page, fastest / 3)
    assert seen["model"] == "–" and "no candidate" in seen["notes"]


def test_the_slider_moves_the_choice(page, run):
    _, data, _ = run
    slider = page.find_element("id", "deadline-slider")
    low, high = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    labels = []
    for fraction in (0.0, 0.5, 1.0):
        page.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                            slider, str(low + fraction * (high - low)))
        typed = float(page.find_element("id", "deadline-input").get_attribute("value"))
        assert typed == pytest.approx(10 ** (low + fraction * (high - low)), rel=1e-3)
        labels.append(page.find_element("id", "choice-label").text)
    assert labels[0] == "nothing" and labels[-1] != "nothing"
    loosest = data["deadlines"][-1]["chosen"]
    assert loosest["accuracy"] > 0.5


def test_hover_text_names_the_network_and_its_numbers(page, run):
    _, data, _ = run
    set_deadline(page, data["deadlines"][-1]["deadline_ms"])
    traces = page.execute_script(
        "return document.getElementById('frontier-chart').data.map(t => ({name: t.name, text: t.hovertext}))")
    points = [t for t in traces if t["text"]]
    assert points
    page.execute_script("Plotly.Fx.hover('frontier-chart', [{curveNumber: 0, pointNumber: 0}])")
    hover = page.find_element("css selector", "#frontier-chart .hovertext").text
    rows = {(r["model"], r["cut"], r["backend"], r["precision"]): r for r in data["deadlines"][-1]["candidates"]}
    first = page.execute_script("const p = document.getElementById('frontier-chart').data[0];"
                                "return [p.name, p.x[0], p.y[0]]")
    match = [r for r in rows.values() if r.get("score") == pytest.approx(first[2]) and
             r["estimated_ms"] == pytest.approx(first[1]) and r["model"] in hover]
    assert match, hover
    row = match[0]
    assert f"{row['model']} @ {row['cut']}" in hover or f"{row['model']}@{row['cut']}" in hover.replace(" ", "")
    assert f"test {row['score']:.4f}" in hover and f"validation accuracy {row['val_score']:.4f}" in hover
    assert "estimated p50" in hover and "size" in hover and "RAM" in hover
    if row["precision"] == "int8":
        assert "int8 changes accuracy by" in hover


def test_filters_hide_what_they_leave_out(page, run):
    names = page.execute_script("return document.getElementById('frontier-chart').data.map(t => t.name)")
    assert any(n.startswith("efficientnet_lite0") for n in names)
    box = page.find_element("css selector", "input[data-filter='model'][value='efficientnet_lite0']")
    box.click()
    try:
        names = page.execute_script("return document.getElementById('frontier-chart').data.map(t => t.name)")
        assert not any(n.startswith("efficientnet_lite0 ") for n in names)
        assert any("mobilenet_v3_small" in n for n in names)
    finally:
        box.click()
    page.find_element("css selector", "input[data-filter='kind'][value='probe']").click()
    try:
        names = page.execute_script("return document.getElementById('frontier-chart').data.map(t => t.name)")
        assert not any(" probe " in n for n in names)
    finally:
        page.find_element("css selector", "input[data-filter='kind'][value='probe']").click()


def test_tables_sort_and_read_without_javascript(page, run):
    _, _, html = run
    table = page.find_element("xpath", "//h2[text()='All candidates']/following-sibling::table[1]")
    header = table.find_element("xpath", ".//th[text()='estimated p50']")
    header.click()
    values = [float(td.text.split()[0]) for td in table.find_elements("xpath", ".//tbody/tr/td[4]")]
    assert values == sorted(values) and len(values) > 10
    header.click()
    values = [float(td.text.split()[0]) for td in table.find_elements("xpath", ".//tbody/tr/td[4]")]
    assert values == sorted(values, reverse=True)
    source = html.read_text()
    # without JavaScript the static tables are there and the interactive part stays hidden
    assert "<section id=\"interactive\" hidden>" in source and "<h2>All candidates</h2>" in source
    assert "<noscript>" in source


def test_no_request_leaves_the_page_and_screenshots(browser, run):
    _, _, html = run
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 420):
        browser.set_window_size(width, 1000)
        browser.get(html.as_uri())
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(width, min(height, 3000))
        assert browser.find_element("id", "choice-label").text not in ("", "nothing")
        browser.save_screenshot(str(SCREENSHOTS / f"report-{width}px.png"))
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls and all(u.startswith(("file://", "data:", "blob:", "about:")) for u in urls), urls
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert (SCREENSHOTS / "report-420px.png").stat().st_size > 10_000


def test_open_hands_the_page_to_the_default_browser(run, tmp_path):
    run_dir, _, html = run
    # webbrowser runs $BROWSER with the page's address: echo shows what a browser would have been given
    opened = run_cli("report", str(run_dir), "--out", str(tmp_path), "--open", env={"BROWSER": "echo"})
    assert opened.returncode == 0, opened.stderr
    assert (tmp_path / "report.html").as_uri() in opened.stdout
