// oodwatch performance page. Loaded after app.js (el, api, say, header). Service and model names
// come from the traffic, so they are attacker-reachable: they only ever go in as text nodes or
// as SVG text content, never as markup. Charts are SVG built here; nothing is fetched elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2a6df4", "#d9480f", "#2e8b57", "#8e44ad", "#b8860b", "#c2185b", "#00838f", "#555"];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function fmt(value, digits = 0) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function lineChart(container, series, metric, quantile) {
  const width = 900, height = 240, left = 60, right = 10, top = 10, bottom = 40;
  const key = `${metric}_${quantile}`;
  const lines = series.lines
    .map((line) => ({ ...line, values: line.points.filter((p) => p[key] !== null && p[key] !== undefined) }))
    .filter((line) => line.values.length);
  container.replaceChildren();
  if (!lines.length) {
    container.append(el("p", { class: "muted" }, "no data in this window"));
    return;
  }
  const t0 = series.from, t1 = series.to;
  const ymax = Math.max(...lines.flatMap((l) => l.values.map((p) => p[key]))) * 1.1 || 1;
  const x = (t) => left + ((t - t0) / Math.max(1, t1 - t0)) * (width - left - right);
  const y = (v) => top + (1 - v / ymax) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), stroke: "#e5e5e5" }));
    chart.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#666" }, fmt(v)));
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16);
    chart.append(svg("text", { x: x(t), y: height - bottom + 16, "text-anchor": anchor, "font-size": 11, fill: "#666" }, label));
  }
  chart.append(svg("text", { x: 4, y: top + 10, "font-size": 11, fill: "#666" }, `${quantile} ms`));
  const legend = el("div", { class: "legend" });
  const models = [...new Set(lines.map((l) => `${l.service}/${l.model}`))];
  for (const line of lines) {
    const color = COLORS[models.indexOf(`${line.service}/${line.model}`) % COLORS.length];
    const d = line.values.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    const attrs = { d, fill: "none", stroke: color, "stroke-width": 2 };
    if (line.side === "server") attrs["stroke-dasharray"] = "6 4";
    const path = svg("path", attrs);
    path.append(svg("title", {}, `${line.service} ${line.model} ${line.side}`));
    chart.append(path);
    if (line.values.length === 1) {
      chart.append(svg("circle", { cx: x(line.values[0].t), cy: y(line.values[0][key]), r: 3, fill: color }));
    }
    const swatch = svg("svg", { width: 22, height: 10 });
    swatch.append(svg("line", { x1: 0, x2: 22, y1: 5, y2: 5, stroke: color, "stroke-width": 2, ...(line.side === "server" ? { "stroke-dasharray": "6 4" } : {}) }));
    legend.append(el("span", {}, swatch, ` ${line.service} · ${line.model} · ${line.side}`));
  }
  container.append(chart, legend);
}

function table(id, heads, rows) {
  const node = document.getElementById(id);
  node.tHead.replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  node.tBodies[0].replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {}, c))))));
}

function budgetBar(left) {
  const bar = svg("svg", { width: 120, height: 12, role: "img" });
  const share = Math.max(0, Math.min(1, left));
  bar.append(svg("rect", { x: 0, y: 1, width: 120, height: 10, fill: "#eee" }));
  bar.append(svg("rect", { x: 0, y: 1, width: 120 * share, height: 10, fill: left < 0.25 ? "#b00020" : left < 0.5 ? "#a15c00" : "#2e8b57" }));
  return bar;
}

async function perfPage() {
  await header();
  const form = document.getElementById("perf-filters");
  const params = new URLSearchParams(window.location.search);
  for (const name of ["since", "service", "model", "quantile"]) if (params.get(name)) form.elements[name].value = params.get(name);
  async function load() {
    const query = new URLSearchParams();
    for (const name of ["since", "service", "model"]) if (form.elements[name].value) query.set(name, form.elements[name].value);
    const quantile = form.elements.quantile.value;
    say("loading…");
    const [report, series] = await Promise.all([api(`/api/perf/report?${query}`), api(`/api/perf/series?${query}`)]);
    lineChart(document.getElementById("chart-e2e"), series, "e2e", quantile);
    lineChart(document.getElementById("chart-ttft"), series, "ttft", quantile);
    table("slos", ["SLO", "objective", "budget left", "", "bad / events", "burn 5m", "burn 1h", "burn 6h", "alert"],
      (report.slos || []).map((s) => [s.slo, s.objective, `${(s.budget_left * 100).toFixed(1)}%`, budgetBar(s.budget_left),
        `${s.bad_events} / ${s.events}`, s.burn["5m"], s.burn["60m"], s.burn["360m"], s.firing.join(", ") || "–"]));
    table("models", ["service", "model", "side", "requests", "errors", "retries", "e2e p50/p95/p99", "TTFT p50/p95/p99", "TPOT p50", "NTPOT p50", "queue p95", "tokens/s p50"],
      report.models.map((r) => [r.service, r.model, r.side, r.requests, `${(r.error_rate * 100).toFixed(2)}%`, r.retries,
        `${fmt(r.e2e_p50_ms)} / ${fmt(r.e2e_p95_ms)} / ${fmt(r.e2e_p99_ms)}`, `${fmt(r.ttft_p50_ms)} / ${fmt(r.ttft_p95_ms)} / ${fmt(r.ttft_p99_ms)}`,
        fmt(r.tpot_p50_ms, 1), fmt(r.ntpot_p50_ms, 1), fmt(r.queue_p95_ms), fmt(r.tokens_per_s_p50, 1)]));
    const gap = report.client_vs_server || { by_model: [], by_concurrency: [] };
    table("gap", ["service", "model", "pairs", "client e2e p95", "server e2e p95", "gap p50", "gap p95", "server queue p95"],
      gap.by_model.map((g) => [g.service, g.model, g.pairs, fmt(g.client_e2e_p95_ms), fmt(g.server_e2e_p95_ms), fmt(g.gap_p50_ms), fmt(g.gap_p95_ms), fmt(g.server_queue_p95_ms)]));
    const classes = gap.by_concurrency.map((c) => `${c.concurrency}: ${fmt(c.gap_p50_ms)} ms (${c.pairs})`).join(" · ");
    const verdict = { true: "grows with concurrency: the client side queues", false: "does not grow with concurrency", null: "not enough paired requests to tell" };
    document.getElementById("gap-verdict").textContent = gap.pairs ? `Gap p50 by client concurrency: ${classes}. The gap ${verdict[String(gap.gap_grows_with_concurrency)]}.` : "No client span paired with a server span in this window.";
    table("metrics", ["service", "model", "side", "metric", "tokens", "count", "p50", "p95", "p99"],
      report.metrics.map((m) => [m.service, m.model, m.side, m.metric + (m.coarse ? " (coarse buckets)" : ""), m.token_type, m.count,
        `${fmt(m.p50)} ± ${fmt(m.p50_resolution)}`, `${fmt(m.p95)} ± ${fmt(m.p95_resolution)}`, `${fmt(m.p99)} ± ${fmt(m.p99_resolution)}`]));
    say(report.models.length ? "" : "No LLM requests in this window.");
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch((error) => say(error.message, true));
  });
  await load();
}

if (document.body.dataset.page === "perf") perfPage().catch((error) => say(error.message, true));
