// oodwatch triage desk. Everything shown comes from the API and is attacker-reachable, so it is
// only ever put into the page as text (textContent), never as markup. No inline script exists
// anywhere and the CSP forbids it, so injected markup could not run even if it got in.
"use strict";

const LABELS = ["confirmed", "false_positive", "benign_ood", "needs_policy"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "href") node.setAttribute("href", value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function csrfToken() {
  const match = document.cookie.split("; ").find((c) => c.startsWith("oodwatch_csrf="));
  return match ? decodeURIComponent(match.slice("oodwatch_csrf=".length)) : "";
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
  if (init.method && init.method !== "GET") {
    init.headers["X-CSRF-Token"] = csrfToken();
    if (init.body !== undefined) init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/ui/login");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? String(body.detail) : `HTTP ${response.status}`);
  return body;
}

function say(text, isError) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = isError ? "message error" : "message";
}

function when(ts) {
  return ts ? String(ts).replace("T", " ").slice(0, 19) : "";
}

async function header() {
  const who = await api("/api/whoami");
  document.getElementById("who").textContent = `${who.name} (${who.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } });
    window.location.assign("/ui/login");
  });
  return who;
}

// -- queue -------------------------------------------------------------------------------

const queueState = { rows: [], selected: 0, view: "bundles" };

function filterParams() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form).entries()) {
    if (value && key !== "view") params.append(key, value);
  }
  queueState.view = form.elements.view.value;
  return params;
}

async function loadQueue() {
  const params = filterParams();
  params.set("limit", "200");
  const [stats, rows] = await Promise.all([
    api("/api/queue/stats"),
    api(`/api/${queueState.view === "groups" ? "groups" : "escalations"}?${params}`),
  ]);
  const bySeverity = Object.entries(stats.open_by_severity).map(([s, n]) => `${s} ${n}`).join(" · ");
  document.getElementById("stats").replaceChildren(
    el("span", {}, `open ${stats.open}`), el("span", {}, bySeverity || "nothing open"),
    el("span", {}, `oldest open ${Math.round(stats.oldest_open_age_s / 60)} min`),
    el("span", {}, `time to resolve p50 ${Math.round(stats.time_to_resolve_p50_s / 60)} min`),
  );
  queueState.rows = rows;
  queueState.selected = Math.min(queueState.selected, Math.max(0, rows.length - 1));
  renderQueue();
}

function renderQueue() {
  const table = document.getElementById("queue");
  const groups = queueState.view === "groups";
  const heads = groups
    ? ["severity", "bundles", "service", "categories", "last", "example"]
    : ["severity", "score", "service", "categories", "judge", "state", "claimed by", "created", "bundle"];
  table.tHead.replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  const body = queueState.rows.map((row, i) => {
    const link = (id) => el("a", { href: `/ui/bundle/${encodeURIComponent(id)}` }, id.slice(0, 12));
    const cells = groups
      ? [row.severity, row.bundles, row.service, row.categories.join(", "), when(row.last_at), link(row.example_bundle_id)]
      : [row.severity, Number(row.max_score).toFixed(3), row.service, row.categories.join(", "), row.judge_status,
         row.queue_state, row.claimed_by, when(row.created_at), link(row.bundle_id)];
    const tr = el("tr", { class: `sev-${row.severity}${i === queueState.selected ? " selected" : ""}` },
      ...cells.map((c) => el("td", {}, c)));
    tr.addEventListener("click", () => { queueState.selected = i; renderQueue(); });
    return tr;
  });
  table.tBodies[0].replaceChildren(...body);
  if (!queueState.rows.length) say("Nothing here with these filters.");
}

function selectedBundleId() {
  const row = queueState.rows[queueState.selected];
  return row ? (row.bundle_id || row.example_bundle_id) : null;
}

async function queueAction(action) {
  const id = selectedBundleId();
  if (!id || queueState.view === "groups") return;
  try {
    await api(`/api/escalations/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    say(`${action === "claim" ? "claimed" : "released"} ${id}`);
    await loadQueue();
  } catch (error) {
    say(error.message, true);
  }
}

async function queuePage() {
  await header();
  const form = document.getElementById("filters");
  for (const [key, value] of new URLSearchParams(window.location.search)) {
    if (form.elements[key]) form.elements[key].value = value;
  }
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadQueue().catch((e) => say(e.message, true));
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    const keys = {
      j: () => { queueState.selected = Math.min(queueState.selected + 1, queueState.rows.length - 1); renderQueue(); },
      k: () => { queueState.selected = Math.max(queueState.selected - 1, 0); renderQueue(); },
      o: () => { const id = selectedBundleId(); if (id) window.location.assign(`/ui/bundle/${encodeURIComponent(id)}`); },
      Enter: () => keys.o(),
      c: () => queueAction("claim"),
      u: () => queueAction("unclaim"),
      r: () => loadQueue().catch((e) => say(e.message, true)),
      "/": () => document.querySelector("#filters select").focus(),
    };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });
  await loadQueue();
}

// -- bundle ------------------------------------------------------------------------------

function scoreTable(title, scores) {
  return el("table", { class: "scores" },
    el("caption", {}, title),
    el("tr", {}, el("th", {}, "category"), el("th", {}, "score"), el("th", {}, "threshold"), el("th", {}, "")),
    ...scores.map((s) => el("tr", { class: s.score >= s.threshold ? "flagged" : "" },
      el("td", {}, s.category), el("td", {}, Number(s.score).toFixed(3)),
      el("td", {}, Number(s.threshold).toFixed(3)), el("td", {}, s.score >= s.threshold ? "flagged" : ""))));
}

function renderBundle(b) {
  const flags = [b.severity, b.queue_state, `judge ${b.judge_status}`, b.drill_id ? `drill ${b.drill_id}` : "live"];
  document.getElementById("summary").replaceChildren(
    el("h2", {}, `Bundle ${b.bundle_id}`),
    el("p", { class: `badges sev-${b.severity}` }, ...flags.map((f) => el("span", { class: "badge" }, f))),
    el("p", {}, `service ${b.service} · tenant ${b.tenant || "-"} · model ${b.model || "-"} · session ${b.session_id}`),
    el("p", {}, `categories: ${b.categories.join(", ")}`),
    el("p", {}, `claimed by ${b.claimed_by || "nobody"}${b.label ? ` · resolved as ${b.label} by ${b.resolved_by}` : ""}`),
    el("p", { class: "muted" }, `policy ${b.policy_version} · detectors ${Object.entries(b.detector_versions).map(([k, v]) => `${k} ${v}`).join(", ")}`),
  );

  const conversation = [];
  const tools = [];
  for (const event of b.events) {
    conversation.push(el("h3", {}, `${event.operation || "event"} · ${event.span_name} · ${event.convention}`));
    if (event.system_instructions) conversation.push(el("div", { class: "msg role-system" }, el("b", {}, "system"), el("pre", {}, event.system_instructions)));
    for (const m of [...event.input_messages, ...event.output_messages]) {
      const calls = (m.tool_calls || []).map((c) => el("pre", { class: "call" }, `→ ${c.name}(${c.arguments})`));
      conversation.push(el("div", { class: `msg role-${m.role.replace(/[^a-z_]/gi, "")}` }, el("b", {}, m.role), el("pre", {}, m.content), ...calls));
    }
    for (const d of event.retrieved_documents) conversation.push(el("div", { class: "msg role-document" }, el("b", {}, "document"), el("pre", {}, d)));
    for (const t of event.tool_definitions) {
      tools.push(el("div", { class: "tool" }, el("b", {}, `${t.name}${t.server ? ` @ ${t.server}` : ""}`), el("pre", {}, t.description),
        el("pre", { class: "muted" }, JSON.stringify(t.parameters || {}, null, 1))));
    }
    for (const c of event.tool_calls) {
      tools.push(el("div", { class: "tool call" }, el("b", {}, `call ${c.name}`), el("pre", {}, c.arguments), el("pre", {}, c.result || "")));
    }
  }
  document.getElementById("conversation").replaceChildren(...conversation);
  document.getElementById("tools").replaceChildren(...(tools.length ? tools : [el("p", { class: "muted" }, "no tools")]));

  // Multi-line reasons (a rug pull's pinned description and diff) get a block of their own.
  const scores = b.screenings.flatMap((s) => [
    scoreTable(`tier 1 · ${s.decision} · ${s.reasons.filter((r) => !r.includes("\n")).join("; ")}`, s.scores),
    ...s.reasons.filter((r) => r.includes("\n")).map((r) => el("pre", { class: "diff" }, r)),
  ]);
  for (const t of b.tier2 || []) {
    scores.push(scoreTable(`tier 2 · ${t.detector_version} · distance ${Number(t.distance).toFixed(4)}`, t.scores));
    scores.push(el("ul", { class: "exemplars" }, ...t.exemplars.map((x) =>
      el("li", {}, `${Number(x.similarity).toFixed(3)} ${x.label} (${x.source}): `, el("q", {}, x.text)))));
  }
  document.getElementById("scores").replaceChildren(...scores);

  const judge = [el("p", {}, `status: ${b.judge_status}`)];
  if (b.tier3) {
    judge.push(el("p", { class: "muted" }, `model ${b.tier3.model} · attempts ${b.tier3.attempts} · ${b.tier3.latency_ms} ms`));
    if (b.tier3.error) judge.push(el("p", { class: "error" }, b.tier3.error));
    const v = b.tier3.verdict;
    if (v) {
      judge.push(el("p", {}, `violation ${v.violation} · severity ${v.severity} · confidence ${Number(v.confidence).toFixed(2)} · ${v.categories.join(", ")}`));
      judge.push(el("blockquote", { class: "rationale" }, v.rationale));
      judge.push(el("ul", {}, ...v.evidence.map((q) => el("li", {}, el("q", {}, q)))));
    }
  }
  document.getElementById("judge").replaceChildren(...judge);

  const start = b.hops.length ? b.hops[0].at_ns : 0;
  document.getElementById("timeline").replaceChildren(el("table", { class: "timeline" },
    ...b.hops.map((h) => el("tr", {}, el("td", {}, h.stage), el("td", {}, `+${((h.at_ns - start) / 1e6).toFixed(1)} ms`), el("td", {}, h.note)))));
  document.getElementById("history").replaceChildren(...(b.reviews.length
    ? [el("table", {}, ...b.reviews.map((r) => el("tr", {}, el("td", {}, when(r.at)), el("td", {}, r.actor), el("td", {}, r.role),
        el("td", {}, r.action), el("td", {}, r.label), el("td", {}, r.note))))]
    : [el("p", { class: "muted" }, "no reviews yet")]));
}

async function bundlePage() {
  await header();
  const id = decodeURIComponent(window.location.pathname.split("/").pop());
  const reload = async () => renderBundle(await api(`/api/escalations/${encodeURIComponent(id)}`));
  const act = async (path, body, done) => {
    try {
      await api(`/api/escalations/${encodeURIComponent(id)}/${path}`, { method: "POST", body: body && JSON.stringify(body) });
      await reload();
      say(done);
    } catch (error) {
      say(error.message, true);
    }
  };
  const resolve = () => act("resolve", { label: document.getElementById("label").value, note: document.getElementById("note").value },
    "resolved");
  document.getElementById("claim").addEventListener("click", () => act("claim", undefined, "claimed"));
  document.getElementById("release").addEventListener("click", () => act("unclaim", undefined, "released"));
  document.getElementById("resolve").addEventListener("submit", (event) => { event.preventDefault(); resolve(); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); resolve(); return; }
    if (event.target.closest("input, select, textarea")) return;
    if (event.key === "c") act("claim", undefined, "claimed");
    else if (event.key === "u") act("unclaim", undefined, "released");
    else if (["1", "2", "3", "4"].includes(event.key)) document.getElementById("label").value = LABELS[Number(event.key) - 1];
    else if (event.key === "n") { event.preventDefault(); document.getElementById("note").focus(); }
    else if (event.key === "q") window.location.assign("/ui");
  });
  try {
    await reload();
  } catch (error) {
    say(error.message, true);
  }
}

async function drillsPage() {
  await header();
  const rows = await api("/api/drills/runs?limit=20");
  const heads = ["run", "family", "cases", "recall (controls: FPR)", "tier ok", "evidence complete", "p95 detect s", "started"];
  document.getElementById("runs").tHead.replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  document.getElementById("runs").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
    el("td", {}, r.run_id), el("td", {}, r.family), el("td", {}, r.cases),
    el("td", {}, Number(r.flagged_share).toFixed(3)), el("td", {}, Number(r.tier_ok).toFixed(2)),
    el("td", {}, Number(r.evidence_complete).toFixed(2)), el("td", {}, Number(r.p95_detect_s).toFixed(2)),
    el("td", {}, when(r.started_at)))));
  if (!rows.length) say("No drill runs yet: `oodwatch drill run`.");
}

// -- guard: session actions and grants ------------------------------------------------------

function list(values) {
  return values.split(",").map((v) => v.trim()).filter((v) => v);
}

async function loadActions(who) {
  const rows = await api("/api/actions?active=true");
  const heads = ["action", "session", "service", "tenant", "reason", "grant", "until", "bundle", ""];
  const table = document.getElementById("actions");
  table.tHead.replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  table.tBodies[0].replaceChildren(...rows.map((r) => {
    const cell = el("td", {});
    if (who.role === "reviewer" || who.role === "admin") {
      const note = el("input", { size: 16, placeholder: "why lift (required)" });
      const button = el("button", { type: "button" }, "Lift");
      button.addEventListener("click", async () => {
        try {
          await api(`/api/actions/${encodeURIComponent(r.record_id)}/lift`, { method: "POST", body: JSON.stringify({ note: note.value }) });
          say(`lifted ${r.record_id}`);
          await loadActions(who);
        } catch (error) { say(error.message, true); }
      });
      cell.append(note, button);
    }
    const bundle = r.bundle_id ? el("a", { href: `/ui/bundle/${encodeURIComponent(r.bundle_id)}` }, r.bundle_id.slice(0, 12)) : "";
    return el("tr", {}, el("td", {}, r.action), el("td", {}, r.session_id), el("td", {}, r.service), el("td", {}, r.tenant),
      el("td", {}, r.reason), el("td", {}, r.grant_id), el("td", {}, when(r.expires_at)), el("td", {}, bundle), cell);
  }));
  if (!rows.length) table.tBodies[0].replaceChildren(el("tr", {}, el("td", { class: "muted" }, "none in force")));
}

async function loadGrants(who) {
  const all = document.getElementById("all-grants").checked;
  const rows = await api(`/api/grants?active=${all ? "false" : "true"}`);
  const heads = ["grant", "state", "tenant", "categories", "services", "users", "until", "granted by", "reason", ""];
  const table = document.getElementById("grants");
  table.tHead.replaceChildren(el("tr", {}, ...heads.map((h) => el("th", {}, h))));
  table.tBodies[0].replaceChildren(...rows.map(({ grant: g, state }) => {
    const cell = el("td", {});
    if (who.role === "admin" && state === "active") {
      const reason = el("input", { size: 14, placeholder: "why revoke" });
      const button = el("button", { type: "button" }, "Revoke");
      button.addEventListener("click", async () => {
        try {
          await api(`/api/grants/${encodeURIComponent(g.grant_id)}/revoke`, { method: "POST", body: JSON.stringify({ reason: reason.value }) });
          say(`revoked ${g.grant_id}`);
          await loadGrants(who);
        } catch (error) { say(error.message, true); }
      });
      cell.append(reason, button);
    }
    return el("tr", {}, el("td", {}, g.grant_id), el("td", {}, state), el("td", {}, g.tenant), el("td", {}, g.categories.join(", ")),
      el("td", {}, g.services.join(", ") || "all"), el("td", {}, g.users.join(", ") || "all"),
      el("td", {}, new Date(g.expires_ns / 1e6).toISOString().slice(0, 16).replace("T", " ")), el("td", {}, g.granted_by),
      el("td", {}, g.reason), cell);
  }));
  if (!rows.length) table.tBodies[0].replaceChildren(el("tr", {}, el("td", { class: "muted" }, "no grants")));
}

async function guardPage() {
  const who = await header();
  document.getElementById("all-grants").addEventListener("change", () => loadGrants(who).catch((e) => say(e.message, true)));
  const form = document.getElementById("grant-form");
  if (who.role === "admin") {
    form.hidden = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = form.elements;
      const expires = new Date(Date.now() + Number(f.hours.value) * 3600e3).toISOString();
      const body = { tenant: f.tenant.value.trim(), categories: list(f.categories.value), services: list(f.services.value),
        users: list(f.users.value), reason: f.reason.value, expires_at: expires };
      try {
        const made = await api("/api/grants", { method: "POST", body: JSON.stringify(body) });
        say(`granted ${made.grant.grant_id}`);
        await loadGrants(who);
      } catch (error) { say(error.message, true); }
    });
  }
  await Promise.all([loadActions(who), loadGrants(who)]);
}

function loginPage() {
  if (new URLSearchParams(window.location.search).has("failed")) document.getElementById("failed").hidden = false;
}

const pages = { queue: queuePage, bundle: bundlePage, drills: drillsPage, guard: guardPage, login: loginPage };
const run = pages[document.body.dataset.page];
if (run) Promise.resolve(run()).catch((error) => { if (document.getElementById("message")) say(error.message, true); });
