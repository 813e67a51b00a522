// oodwatch desk: the version-drift page. Uses app.js's helpers (el, api, say, header). Model
// output shown here (exemplars) is attacker-reachable text: it only ever goes in as text nodes.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#b00020", "#2a6df4", "#2e8b57", "#a15c00", "#7b1fa2", "#555555"];

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function pct(x) { return `${(100 * Number(x)).toFixed(2)}%`; }
function interval(r) { return `${pct(r.rate)} [${pct(r.interval[0])}, ${pct(r.interval[1])}]`; }

// A small line chart: series = [{name, points: [[x, y], ...]}], x and y scaled to the box.
function lineChart(series, yLabel) {
  const w = 640, h = 200, pad = 40;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y1 = Math.max(...ys, 1e-6);
  const sx = (x) => pad + ((x - x0) / (x1 - x0)) * (w - 2 * pad);
  const sy = (y) => h - pad + 10 - (y / y1) * (h - pad - 10);
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
  chart.append(svg("line", { x1: pad, y1: h - pad + 10, x2: w - pad, y2: h - pad + 10, stroke: "#999" }));
  chart.append(svg("text", { x: 2, y: 12, "font-size": 11, fill: "#555" }, `${yLabel} (max ${pct(y1)})`));
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d, fill: "none", stroke: colour, "stroke-width": 2 }));
    for (const p of s.points) chart.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: colour }));
    chart.append(svg("text", { x: pad + 4, y: 26 + 13 * i, "font-size": 11, fill: colour }, s.name));
  });
  return chart;
}

// Two histograms over the same score bins, as shares, baseline and new side by side.
function histogramChart(category, hist, ids, names) {
  const w = 640, h = 170, pad = 30;
  const series = ids.filter((id) => hist[id]).map((id) => {
    const counts = hist[id], total = counts.reduce((a, b) => a + b, 0) || 1;
    return counts.map((c) => c / total);
  });
  const bins = hist.edges.length, top = Math.max(...series.flat(), 1e-6);
  const bw = (w - 2 * pad) / bins;
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
  chart.append(svg("text", { x: 2, y: 12, "font-size": 11, fill: "#555" }, `${category}: share of events per score bin (logit-spaced, 0 at left, 1 at right)`));
  series.forEach((shares, i) => {
    shares.forEach((s, b) => {
      if (!s) return;
      const bh = (s / top) * (h - pad - 10);
      chart.append(svg("rect", { x: pad + b * bw + (i * bw) / 2, y: h - pad - bh, width: bw / 2, height: bh, fill: COLOURS[i] }));
    });
    chart.append(svg("text", { x: w - 220, y: 26 + 13 * i, "font-size": 11, fill: COLOURS[i] }, names[i]));
  });
  return chart;
}

async function showVersion(id) {
  const d = await api(`/api/drift/versions/${encodeURIComponent(id)}`);
  const section = document.getElementById("detail");
  section.hidden = false;
  const v = d.version;
  document.getElementById("detail-title").textContent = `${v.label} (${v.status}, ${v.events} events)`;
  const ids = [v.version_id, v.baseline_id].filter(Boolean);
  const categories = [...new Set(d.hourly.flatMap((h) => Object.keys(h.flagged)))].sort();
  const select = document.getElementById("category");
  select.replaceChildren(...categories.map((c) => el("option", { value: c }, c)));
  const draw = () => {
    const c = select.value;
    const series = ids.map((vid) => ({
      name: vid === v.version_id ? "new: " + v.label : "baseline",
      points: d.hourly.filter((hr) => hr.version_id === vid && hr.events)
        .map((hr) => [Date.parse(hr.hour.replace(" ", "T") + "Z"), (hr.flagged[c] || 0) / hr.events]),
    })).filter((s) => s.points.length);
    document.getElementById("hourly").replaceChildren(series.length ? lineChart(series, `${c} escalation rate`) : el("p", { class: "muted" }, "no hourly data yet"));
  };
  select.onchange = draw;
  if (categories.length) draw();
  document.getElementById("histograms").replaceChildren(...Object.entries(d.histograms).map(([c, hist]) =>
    histogramChart(c, hist, [v.baseline_id, v.version_id], ["baseline", "new"])));
  const looks = document.getElementById("looks");
  looks.tHead.replaceChildren(el("tr", {}, ...["look", "new events", "baseline events", "drifted", "moved"].map((x) => el("th", {}, x))));
  looks.tBodies[0].replaceChildren(...d.comparisons.map((c) => el("tr", { class: c.drifted ? "flagged" : "" },
    el("td", {}, c.look), el("td", {}, c.events_new), el("td", {}, c.events_old), el("td", {}, c.drifted ? "yes" : "no"),
    el("td", {}, c.moved.join(", ")))));
  section.scrollIntoView();
}

function changeCard(ch) {
  const verdict = ch.drifted ? `DRIFTED after ${ch.events_to_detect} events` : ch.status;
  const card = el("div", { class: "tool" },
    el("b", {}, `${ch.version}`), ` replaces ${ch.baseline}: `, el("span", { class: ch.drifted ? "error" : "muted" }, verdict),
    " ", el("a", { href: `?version=${encodeURIComponent(ch.version_id)}` }, "charts"));
  if (ch.moved.length) {
    card.append(el("table", {}, el("tr", {}, ...["test", "effect (new − old)", "95% interval", "q", "new", "old"].map((x) => el("th", {}, x))),
      ...ch.moved.map((m) => el("tr", {}, el("td", {}, m.test), el("td", {}, Number(m.effect).toFixed(4)),
        el("td", {}, `${Number(m.interval[0]).toFixed(4)} .. ${Number(m.interval[1]).toFixed(4)}`),
        el("td", {}, Number(m.q).toExponential(1)),
        el("td", {}, m.new.rate !== undefined ? interval({ rate: m.new.rate, interval: m.new.interval }) : JSON.stringify(m.new)),
        el("td", {}, m.old.rate !== undefined ? interval({ rate: m.old.rate, interval: m.old.interval }) : JSON.stringify(m.old))))));
  }
  if (ch.exemplars_new.length) {
    card.append(el("h3", {}, "outputs most typical of the new version"));
    for (const e of ch.exemplars_new) card.append(el("pre", { class: "msg role-assistant" }, e.text));
  }
  if (ch.exemplars_old.length) {
    card.append(el("h3", {}, "outputs most typical of the baseline"));
    for (const e of ch.exemplars_old) card.append(el("pre", { class: "msg" }, e.text));
  }
  if (ch.bundles.length) {
    card.append(el("p", {}, "bundles: ", ...ch.bundles.map((b) => el("a", { href: `/ui/bundle/${encodeURIComponent(b.bundle_id)}`, class: "badge" }, `${b.severity} ${b.categories.join(",")}`))));
  }
  return card;
}

async function driftPage() {
  await header();
  const params = new URLSearchParams(window.location.search);
  const service = params.get("service") || "";
  const report = await api("/api/drift/report" + (service ? `?service=${encodeURIComponent(service)}` : ""));
  const all = service ? [service] : [...new Set(report.versions.map((v) => v.service))].sort();
  const select = document.getElementById("service");
  select.append(...all.map((s) => el("option", { value: s }, s)));
  select.value = service;
  select.onchange = () => window.location.assign("/ui/drift" + (select.value ? `?service=${encodeURIComponent(select.value)}` : ""));
  const shown = report.categories.filter((c) => report.versions.some((v) => v.rates[c].escalated.count)).slice(0, 5);
  const table = document.getElementById("versions");
  table.tHead.replaceChildren(el("tr", {}, ...["version", "status", "events", "refusal", ...shown].map((h) => el("th", {}, h))));
  table.tBodies[0].replaceChildren(...report.versions.map((v) => el("tr", { class: v.status === "drifted" ? "flagged" : "" },
    el("td", {}, el("a", { href: `?version=${encodeURIComponent(v.version_id)}` }, v.label)), el("td", {}, v.status), el("td", {}, v.events),
    el("td", {}, interval(v.refusal)), ...shown.map((c) => el("td", {}, interval(v.rates[c].escalated))))));
  document.getElementById("changes").replaceChildren(...report.changes.map(changeCard));
  if (!report.versions.length) say("No model versions seen yet.");
  if (params.get("version")) await showVersion(params.get("version"));
}

if (document.body.dataset.page === "drift") driftPage().catch((error) => say(error.message, true));
