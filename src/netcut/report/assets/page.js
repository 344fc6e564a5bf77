// The report page: draws the run's data (decided in Python) and looks choices up. It decides nothing itself: the
// choice at every deadline comes from the table of steps that `netcut report` computed with search/decide.py.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("netcut-data").textContent);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                             "'": "&#39;"})[c]);
  const ms = (v) => (v === null || v === undefined) ? "–" : `${Number(v).toPrecision(3)} ms`;
  const num = (v, d) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);
  const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"];
  const models = [...new Set(data.points.map((p) => p.model).concat(data.depth.map((l) => l.model)))].sort();
  const color = (m) => palette[models.indexOf(m) % palette.length];
  const config = {responsive: true, displaylogo: false};
  // on a narrow screen the legend goes under the chart, where it does not squeeze the plot
  const legend = () => (window.innerWidth < 700 ? {orientation: "h", y: -0.25, font: {size: 10}}
                                                : {font: {size: 11}});
  let deadline = data.slider.start;

  $("interactive").hidden = false;

  // ---- filters ------------------------------------------------------------------------------------------------
  const filterKeys = ["model", "precision", "head", "kind"];
  for (const key of filterKeys) {
    const values = [...new Set(data.points.map((p) => p[key]))].sort();
    $(`filter-${key}`).innerHTML = `${key}: ` + values.map((v) =>
      `<label><input type="checkbox" data-filter="${key}" value="${esc(v)}" checked> ${esc(v)}</label>`).join("");
  }
  const select = $("group-select");
  select.innerHTML = `<option value="">all</option>` + data.groups.map((g, i) =>
    `<option value="${i}">${esc(g.name)}</option>`).join("");
  const first = data.groups.findIndex((g) => g.name === data.first_group && g.device === null);
  if (first >= 0) select.value = String(first);

  function group() {
    return select.value === "" ? null : data.groups[Number(select.value)];
  }

  function shown(point) {
    const g = group();
    if (g && (point.backend !== g.backend || point.precision !== g.precision)) return false;
    if (g && g.device !== null && !(g.device in point.x_by_device)) return false;
    return filterKeys.every((key) => [...document.querySelectorAll(`input[data-filter="${key}"]`)]
      .some((box) => box.checked && box.value === String(point[key])));
  }

  function x(point) {
    const g = group();
    return g && g.device !== null ? point.x_by_device[g.device] : point.x;
  }

  // ---- the frontier chart -----------------------------------------------------------------------------------
  function drawFrontier(outcome) {
    const points = data.points.filter(shown);
    const traces = [];
    const series = new Map();
    for (const p of points) {
      const name = `${p.model} ${p.kind} ${p.precision}`;
      if (!series.has(name)) series.set(name, []);
      series.get(name).push(p);
    }
    for (const [name, pts] of series) {
      const open = pts[0].precision !== "fp32" ? "-open" : "";
      traces.push({type: "scatter", mode: "markers", name, x: pts.map(x), y: pts.map((p) => p.y),
                   hovertext: pts.map((p) => p.hover), hoverinfo: "text",
                   marker: {color: color(pts[0].model), size: pts.map((p) => p.is_full ? 16 : 9),
                            symbol: pts.map((p) => (p.is_full ? "star" : p.kind === "probe" ? "circle" : "diamond")
                                                   + open), line: {width: 1.5, color: color(pts[0].model)}}});
    }
    const byKey = new Map(data.points.map((p) => [p.key, p]));
    const g = group();
    for (const front of (g ? [g] : data.groups.filter((f) => f.device === null))) {
      const pts = front.frontier.map((k) => byKey.get(k)).filter((p) => p !== undefined);
      const xs = pts.map((p) => (front.device !== null ? p.x_by_device[front.device] : p.x));
      traces.push({type: "scatter", mode: "lines", name: `frontier ${front.name}`, x: xs, y: pts.map((p) => p.y),
                   line: {dash: "dot", width: 1.5, color: "#555"}, hoverinfo: "skip"});
    }
    const chosen = outcome.chosen;
    if (chosen) {
      traces.push({type: "scatter", mode: "markers", name: "chosen at this deadline", x: [chosen.estimated_ms],
                   y: [chosen.score], hoverinfo: "skip",
                   marker: {size: 24, symbol: "circle-open", color: "#d00", line: {width: 3, color: "#d00"}}});
    }
    const metric = data.metric.replace("_", " ");
    Plotly.react("frontier-chart", traces, {
      margin: {t: 30, r: 10, b: 50, l: 60}, hovermode: "closest", legend: legend(),
      xaxis: {type: "log", title: {text: "estimated latency p50 (ms)"}},
      yaxis: {title: {text: `test ${metric}`}},
      shapes: [{type: "line", xref: "x", yref: "paper", x0: deadline, x1: deadline, y0: 0, y1: 1,
                line: {color: "#d00", width: 1.5, dash: "dash"}}],
      annotations: [{xref: "x", yref: "paper", x: Math.log10(deadline), y: 1.02, showarrow: false,
                     text: `deadline ${ms(deadline)}`, font: {color: "#d00", size: 11}}]}, config);
  }

  // ---- along the depth ----------------------------------------------------------------------------------------
  function drawDepth(outcome) {
    const g = group() || data.groups.find((f) => f.name === data.first_group) || data.groups[0];
    const lines = data.depth.filter((l) => !g || (l.backend === g.backend && l.precision === g.precision))
      .filter((l) => [...document.querySelectorAll('input[data-filter="model"]')]
        .some((box) => box.checked && box.value === l.model) || !data.points.some((p) => p.model === l.model));
    const traces = [];
    const chosen = outcome.chosen;
    for (const l of lines) {
      const xs = l.cuts.map((_, i) => i);
      const text = l.cuts.map((c, i) => `${esc(l.model)} @ ${esc(c)}<br>estimated ${ms(l.latency[i])}` +
                              (l.score[i] === null ? "" : `<br>test ${num(l.score[i], 4)}`));
      const symbols = l.full.map((f) => (f ? "star" : "circle"));
      const sizes = l.cuts.map((c, i) => (l.full[i] ? 15 : (chosen && chosen.model === l.model &&
                                                            chosen.cut === c ? 14 : 6)));
      traces.push({type: "scatter", mode: "lines+markers", name: `${l.model} latency`, x: xs, y: l.latency,
                   hovertext: text, hoverinfo: "text", line: {color: color(l.model)},
                   marker: {symbol: symbols, size: sizes}, yaxis: "y"});
      traces.push({type: "scatter", mode: "lines+markers", name: `${l.model} ${data.metric}`, x: xs, y: l.score,
                   hovertext: text, hoverinfo: "text", line: {color: color(l.model), dash: "dot"},
                   marker: {symbol: symbols, size: sizes}, yaxis: "y2", connectgaps: true});
    }
    Plotly.react("depth-chart", traces, {
      margin: {t: 30, r: 10, b: 50, l: 60}, hovermode: "closest", legend: legend(),
      title: {text: g ? `${g.name}` : "", font: {size: 13}},
      xaxis: {title: {text: "cut, from the input (block index)"}},
      yaxis: {domain: [0.55, 1], title: {text: "estimated p50 (ms)"}},
      yaxis2: {domain: [0, 0.45], title: {text: `test ${data.metric.replace("_", " ")}`}}}, config);
  }

  // ---- int8 against fp32 ----------------------------------------------------------------------------------------
  function drawInt8() {
    if (!data.int8.length) {
      $("int8-chart").hidden = true;
      $("int8-none").hidden = false;
      return;
    }
    const traces = [];
    for (const m of [...new Set(data.int8.map((p) => p.model))]) {
      const pts = data.int8.filter((p) => p.model === m);
      traces.push({type: "scatter", mode: "markers", name: m, x: pts.map((p) => p.speedup),
                   y: pts.map((p) => p.change), hovertext: pts.map((p) => p.hover), hoverinfo: "text",
                   marker: {color: color(m), size: pts.map((p) => (p.is_full ? 15 : 9)),
                            symbol: pts.map((p) => (p.is_full ? "star" : "circle"))}});
    }
    Plotly.react("int8-chart", traces, {
      margin: {t: 30, r: 10, b: 50, l: 60}, hovermode: "closest", legend: legend(),
      xaxis: {title: {text: "int8 speed-up over fp32 (estimated p50)"}},
      yaxis: {title: {text: "accuracy change, int8 − fp32"}},
      shapes: [{type: "line", xref: "x", yref: "paper", x0: 1, x1: 1, y0: 0, y1: 1, line: {color: "#999"}},
               {type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: 0, y1: 0, line: {color: "#999"}}]},
      config);
  }

  // ---- the choice at a deadline: looked up, not decided -----------------------------------------------------
  function holds(step, d) {
    const high = step.high === null ? Infinity : step.high;
    return (step.low < d || (step.low_included && d === step.low)) && (d < high || (step.high_included && d === high));
  }

  function outcomeAt(d) {
    return data.explored.find((e) => e.deadline_ms === d) || data.steps.find((s) => holds(s, d)) || null;
  }

  function renderChoice(outcome, d) {
    const c = outcome.chosen;
    const notes = [];
    $("choice-label").textContent = c ? c.label : "nothing";
    $("choice-model").textContent = c ? c.model : "–";
    $("choice-cut").textContent = c ? c.cut : "–";
    $("choice-runtime").textContent = c ? `${c.backend} ${c.precision}, head ${c.head}` : "–";
    const status = $("choice-status");
    status.className = `status-${outcome.status}`;
    if (!c) {
      status.textContent = "no network";
      notes.push(outcome.reason || "no trained candidate meets this deadline");
    } else if (outcome.status === "verified") {
      status.textContent = `verified at this deadline: measured ${data.percentile} ${ms(c[data.percentile ===
        "p50" ? "latency_ms" : `latency_${data.percentile}_ms`])}`;
    } else if (outcome.status === "measured") {
      status.textContent = `measured when this run verified it: ${data.percentile} ${ms(c[data.percentile === "p50"
        ? "latency_ms" : `latency_${data.percentile}_ms`])} (a rerun reuses it)`;
    } else {
      status.textContent = `estimated, not verified: \`netcut explore --deadline ${d}\` measures it before choosing`;
    }
    const estimate = c ? c[data.percentile === "p50" ? "estimated_ms" : `estimated_${data.percentile}_ms`] : null;
    $("choice-estimate").textContent = c ? `estimated ${data.percentile} ${ms(estimate)}; with the ` +
      `${Math.round(data.margin * 100)}% margin ${ms(c.admission_ms)} against ${ms(d)}` : "";
    $("choice-scores").textContent = c ? `validation ${num(c.val_score, 4)}, test ${num(c.score, 4)}` +
      (c.fine_tune_blocks ? `, fine-tuned (${c.fine_tune_epochs} epochs)` : ", frozen trunk (probe)") : "–";
    $("choice-size").textContent = c ? `${num(c.size_mb, 2)} MB file, RAM ` +
      (c.ram_mb === null ? "–" : `${c.ram_source === "measured" ? "" : "≈"}${num(c.ram_mb, 1)} MB (${c.ram_source})`)
      : "–";
    const b = outcome.best_off_the_shelf;
    $("choice-baseline").textContent = b ? `${b.label}: test ${num(b.score, 4)}` + (outcome.gain_pct === null ? ""
      : `; the choice is ${outcome.gain_pct >= 0 ? "+" : ""}${num(outcome.gain_pct, 2)}% relative`)
      : "none meets this deadline";
    for (const r of outcome.rejected) {
      notes.push(`rejected: ${r.label} (${r.backend} ${r.precision}), ` + (r.ram_mb !== null
        ? `peak memory ${num(r.ram_mb, 1)} MB over the budget` : `measured ${ms(r.measured_ms)}`));
    }
    for (const call of outcome.close_calls) {
      const distance = 100 * (call.latency_ms / d - 1);
      notes.push(`close call: ${call.label} (${call.backend} ${call.precision}; ${call.what}: ` +
                 `${distance >= 0 ? "+" : ""}${distance.toFixed(1)}%)`);
    }
    if (!outcome.explored && outcome.untrained.length) {
      notes.push(`netcut explore at this deadline would first train ${outcome.untrained.length} proposal(s) this run ` +
                 `did not: ${outcome.untrained.slice(0, 4).join(", ")}${outcome.untrained.length > 4 ? ", …" : ""};` +
                 " the choice shown is among the networks trained so far");
    }
    if (!outcome.explored && data.fine_tunes) {
      notes.push("this run fine-tunes per deadline: at a deadline it did not explore, the choice shown is among " +
                 "the networks it trained");
    }
    $("choice-notes").innerHTML = notes.map((n) => `<li>${esc(n)}</li>`).join("");
  }

  function update() {
    const outcome = outcomeAt(deadline);
    if (outcome === null) return;
    renderChoice(outcome, deadline);
    drawFrontier(outcome);
    drawDepth(outcome);
  }

  // ---- controls ---------------------------------------------------------------------------------------------
  const slider = $("deadline-slider");
  const input = $("deadline-input");
  slider.min = String(Math.log10(data.slider.low));
  slider.max = String(Math.log10(data.slider.high));
  $("deadline-percentile").textContent = `at ${data.percentile}`;

  function setDeadline(d, from) {
    if (!(d > 0) || !isFinite(d)) return;
    deadline = d;
    if (from !== "slider") slider.value = String(Math.log10(d));
    if (from !== "input") input.value = String(Number(d.toPrecision(4)));
    update();
  }

  slider.addEventListener("input", () => setDeadline(Math.pow(10, Number(slider.value)), "slider"));
  input.addEventListener("input", () => setDeadline(Number(input.value), "input"));
  $("explored-deadlines").innerHTML = data.explored.length ? "explored: " + data.explored.map((e) =>
    `<button type="button" data-deadline="${e.deadline_ms}">${ms(e.deadline_ms)}</button>`).join("") : "";
  for (const button of document.querySelectorAll("#explored-deadlines button")) {
    button.addEventListener("click", () => setDeadline(Number(button.dataset.deadline), "button"));
  }
  select.addEventListener("change", update);
  for (const box of document.querySelectorAll("input[data-filter]")) box.addEventListener("change", update);

  // ---- sortable static tables -------------------------------------------------------------------------------
  function cellValue(row, column) {
    const text = row.cells[column] ? row.cells[column].textContent.trim() : "";
    const value = parseFloat(text.replace(/^[≈~+]/, ""));
    return isNaN(value) ? text.toLowerCase() : value;
  }

  for (const table of document.querySelectorAll("#static table")) {
    const heads = [...table.querySelectorAll("thead th")];
    heads.forEach((th, column) => th.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = [...body.rows].sort((a, b) => {
        const va = cellValue(a, column);
        const vb = cellValue(b, column);
        const order = typeof va === typeof vb ? (va < vb ? -1 : va > vb ? 1 : 0) : (typeof va === "number" ? -1 : 1);
        return ascending ? order : -order;
      });
      rows.forEach((r) => body.appendChild(r));
    }));
  }

  drawInt8();
  setDeadline(deadline, "start");
})();
