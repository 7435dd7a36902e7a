// The operator console: plain DOM code, no build step, nothing from elsewhere.
// Every call is an operator call: the token (if any) goes as a bearer token, kept
// for this tab only (sessionStorage), never in a cookie.
"use strict";

const $ = (id) => document.getElementById(id);
let classifiers = [];

function token() {
  return sessionStorage.getItem("crowdstream-operator") || "";
}

function show(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

async function call(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) {
    let message = answer.status + " " + answer.statusText;
    try {
      const data = await answer.json();
      if (data.error) message = data.error;
      if (data.details) message += ": " + data.details.map((d) => d.loc.join(".") + " " + d.msg).join("; ");
    } catch (e) {
      // No such route here: in a deployment split by PE, another worker serves it.
      if (answer.status === 404) message = "this worker does not serve " + path.split("?")[0] + ": open the console on the worker that runs its PE (docs/console.md)";
    }
    throw new Error(message);
  }
  return answer;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function button(text, onClick, secondary) {
  const node = el("button", text, { type: "button" });
  if (secondary) node.className = "secondary";
  node.addEventListener("click", onClick);
  return node;
}

async function act(work, done) {
  show("error", "");
  try {
    await work();
    if (done) show("notice", done);
  } catch (e) {
    show("notice", "");
    show("error", e.message);
  }
}

// -- classifiers --------------------------------------------------------------------

async function loadClassifiers() {
  const data = await (await call("GET", "/api/v1/classifiers")).json();
  classifiers = data.classifiers;
  const models = Object.fromEntries(data.models.map((m) => [m.classifier, m]));
  const rows = $("classifier-rows");
  rows.replaceChildren();
  for (const record of classifiers) {
    const spec = record.spec;
    const model = models[spec.name];
    const row = el("tr", null, { "data-classifier": spec.name });
    row.append(el("td", spec.name));
    row.append(el("td", record.state, { class: "state-" + record.state }));
    row.append(el("td", spec.tags.join(" / ")));
    row.append(el("td", model ? "v" + model.version + " (" + model.n_train + " labels)" : "none yet"));
    const auc = model && model.auc !== null
      ? model.auc.toFixed(3) + (model.auc_low !== null ? " (" + model.auc_low.toFixed(2) + "-" + model.auc_high.toFixed(2) + ")" : "")
      : "-";
    row.append(el("td", auc, { class: "auc" }));
    row.append(el("td", spec.question));
    const actions = el("td", null, { class: "actions" });
    const change = (action) => () => act(async () => {
      if (action === "retire" && !confirm("Retire " + spec.name + "? Its name cannot be used again.")) return;
      await call("POST", "/api/v1/classifiers/" + spec.name + "/" + action);
      await loadClassifiers();
    }, spec.name + ": " + action + "d");
    if (record.state === "active") actions.append(button("Pause", change("pause"), true));
    if (record.state === "paused") actions.append(button("Resume", change("resume"), true));
    if (record.state !== "retired") actions.append(button("Retire", change("retire"), true));
    row.append(actions);
    rows.append(row);
  }
  const streamed = $("stream-classifier");
  if (streamed.options.length !== classifiers.length + 1) {
    const chosen = streamed.value;
    streamed.replaceChildren(el("option", "any", { value: "" }), ...classifiers.map((r) => el("option", r.spec.name, { value: r.spec.name })));
    streamed.value = chosen;
  }
  for (const select of document.querySelectorAll("select[data-classifiers]")) {
    const chosen = select.value;
    select.replaceChildren(...classifiers.map((r) => el("option", r.spec.name, { value: r.spec.name })));
    if (chosen) select.value = chosen;
  }
}

async function addClassifier(event) {
  event.preventDefault();
  await act(async () => {
    const lines = (id) => $(id).value.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
    const gold = lines("add-gold");
    const spec = {
      name: $("add-name").value.trim(),
      question: $("add-question").value.trim(),
      tags: $("add-tags").value.split(",").map((t) => t.trim()).filter((t) => t),
      na_allowed: $("add-na").checked,
      examples: lines("add-examples"),
      gold,
    };
    await call("POST", "/api/v1/classifiers", spec);
    $("add-form").reset();
    await loadClassifiers();
  }, "classifier added: it gets crowd tasks now, and a model after its first labels");
}

// -- learning -----------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A line chart over time, drawn as SVG (no chart library to ship): each series is
// {name, points: [[t, y], ...]}, optionally with band: [[t, low, high], ...] (a 95%
// interval) and dots (one marker a point, for models).
function chart(id, title, series, yRange) {
  const W = 640, H = 220, L = 48, R = 12, T = 12, B = 28;
  const all = series.flatMap((s) => s.points.concat((s.band || []).flatMap(([t, lo, hi]) => [[t, lo], [t, hi]])));
  const figure = el("figure", null, { "data-plot": id });
  figure.append(el("figcaption", title));
  if (!all.length) {
    figure.append(el("p", "Nothing yet.", { class: "muted" }));
    return figure;
  }
  let [t0, t1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  if (t1 === t0) { t0 -= 60; t1 += 60; }
  let [y0, y1] = yRange || [Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (y1 === y0) y1 = y0 + 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const plot = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title });
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    plot.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#ddd" }));
    const label = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#555" });
    label.textContent = Math.abs(y1 - y0) < 10 ? v.toFixed(2) : String(Math.round(v));
    plot.append(label);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const label = svg("text", { x: x(t), y: H - 8, "text-anchor": anchor, "font-size": 11, fill: "#555" });
    label.textContent = clock(t);
    plot.append(label);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    if (s.band && s.band.length) {
      const upper = s.band.map(([t, , hi]) => x(t) + "," + y(hi));
      const lower = s.band.slice().reverse().map(([t, lo]) => x(t) + "," + y(lo));
      plot.append(svg("polygon", { points: upper.concat(lower).join(" "), fill: color, "fill-opacity": 0.15 }));
    }
    plot.append(svg("polyline", {
      points: s.points.map(([t, v]) => x(t) + "," + y(v)).join(" "),
      fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name, "data-points": s.points.length,
    }));
    // A lone point draws no line: a dot shows it.
    if (s.dots || s.points.length === 1) for (const [t, v] of s.points) plot.append(svg("circle", { cx: x(t), cy: y(v), r: 3, fill: color }));
  });
  figure.append(plot);
  const legend = el("p", null, { class: "legend" });
  series.forEach((s, i) => legend.append(el("span", s.name, { "data-color": COLORS[i % COLORS.length] })));
  figure.append(legend);
  return figure;
}

async function loadLearning(event) {
  if (event) event.preventDefault();
  const name = $("learning-classifier").value;
  if (!name) return;
  const data = await latest("learning", "/api/v1/learning/" + encodeURIComponent(name));
  if (!data) return;
  const crowd = data.crowd;
  const end = (p) => p.start + data.bucket_s;
  // The running totals start from 0 at the first bucket's start.
  const from = crowd.length ? [[crowd[0].start, 0]] : [];
  let answers = 0;
  const answered = from.concat(crowd.map((p) => [end(p), (answers += p.answers)]));
  const timed = crowd.filter((p) => p.latency_p50 !== null);
  const models = data.models;
  const last = models[models.length - 1];
  const cost = crowd.length ? crowd[crowd.length - 1].cost_total : 0;
  const labels = crowd.length ? crowd[crowd.length - 1].labels_total : 0;
  show("learning-summary", labels + " labels bought, " + answers + " answers, cost " + cost.toFixed(2) +
    (last ? "; model v" + last.version + " on " + last.n_train + " labels, held-out AUC " + (last.auc === null ? "-" : last.auc.toFixed(3)) : "; no model yet"));
  const tags = last ? Object.keys(last.per_tag) : [];
  const withAuc = models.filter((m) => m.auc !== null);
  $("learning-plots").dataset.classifier = name;
  $("learning-plots").replaceChildren(
    chart("labels", "Labels bought and answers paid for", [
      { name: "labels", points: from.concat(crowd.map((p) => [end(p), p.labels_total])) },
      { name: "answers", points: answered },
    ]),
    chart("cost", "Crowd cost", [{ name: "cost", points: from.concat(crowd.map((p) => [end(p), p.cost_total])) }]),
    chart("latency", "Label latency, task to label (s, per " + Math.round(data.bucket_s) + " s)", [
      { name: "p50", dots: true, points: timed.map((p) => [end(p), p.latency_p50]) },
      { name: "p95", dots: true, points: timed.map((p) => [end(p), p.latency_p95]) },
    ]),
    chart("auc", "Held-out AUC of each model (95% interval)", [{
      name: "AUC", dots: true,
      points: withAuc.map((m) => [m.created, m.auc]),
      band: withAuc.filter((m) => m.auc_ci).map((m) => [m.created, m.auc_ci.low, m.auc_ci.high]),
    }], [0, 1]),
    chart("tags", "Held-out precision and recall of each model, per tag", tags.flatMap((tag) => [
      { name: tag + " precision", dots: true, points: models.filter((m) => m.per_tag[tag]).map((m) => [m.created, m.per_tag[tag].precision]) },
      { name: tag + " recall", dots: true, points: models.filter((m) => m.per_tag[tag]).map((m) => [m.created, m.per_tag[tag].recall]) },
    ]), [0, 1]),
  );
}

// -- labels -------------------------------------------------------------------------

// Each loader shows only the answer to its newest call: an older call answered late
// (a tab opened, then another classifier chosen) must not overwrite it.
const newest = {};

async function latest(what, path) {
  const ticket = (newest[what] = (newest[what] || 0) + 1);
  const data = await (await call("GET", path)).json();
  return ticket === newest[what] ? data : null;
}

async function loadLabels(event) {
  if (event) event.preventDefault();
  const name = $("labels-classifier").value;
  if (!name) return;
  const query = "?classifier=" + encodeURIComponent(name) + "&limit=50" + ($("labels-corrected").checked ? "&corrected=true" : "");
  const data = await latest("labels", "/api/v1/labels" + query);
  if (!data) return;
  const record = classifiers.find((r) => r.spec.name === name);
  const list = $("label-list");
  list.replaceChildren();
  for (const label of data.labels) {
    const item = el("li", null, { "data-item": label.item_id, "data-classifier": label.classifier });
    item.append(el("blockquote", label.text || "(no text)"));
    const tag = label.tag === null ? "no agreement" : label.tag;
    const who = label.corrected_by ? "set by " + label.corrected_by : "crowd";
    const posterior = label.posterior === null ? "" : ", posterior " + label.posterior.toFixed(2);
    item.append(el("p", "Tag: " + tag + " (" + who + posterior + ", agreement " + label.agreement.toFixed(2) + ")", { class: "tag" }));
    const answer = (a) => a.worker_id + " " + (a.tag === null ? "N/A" : a.tag) + (a.accuracy === null || a.accuracy === undefined ? "" : " (est. accuracy " + a.accuracy.toFixed(2) + ")");
    item.append(el("p", "Answers: " + label.answers.map(answer).join(", "), { class: "answers" }));
    const fix = el("div", null, { class: "fix" });
    for (const option of record ? record.spec.tags : []) {
      if (option === label.tag) continue;
      fix.append(button("Set " + option, () => act(async () => {
        await call("POST", "/api/v1/labels/" + name + "/" + encodeURIComponent(label.item_id) + "/correct", { tag: option });
        await loadLabels();
      }, "label corrected: the next model learns it"), true));
    }
    if (label.tag !== null && label.text) {
      fix.append(button("Make gold", () => act(async () => {
        await call("POST", "/api/v1/classifiers/" + name + "/gold", { id: label.item_id, text: label.text, tag: label.tag });
      }, "gold question added: workers are measured on it from now on"), true));
    }
    item.append(fix);
    list.append(item);
  }
  if (!data.labels.length) list.append(el("li", "No labels yet."));
}

// -- classified stream --------------------------------------------------------------

let following = null;  // the AbortController of the open stream

function stopStream() {
  if (following) following.abort();
  following = null;
}

function showItem(item) {
  const list = $("stream-items");
  const entry = el("li", null, { "data-item": item.id });
  entry.append(el("blockquote", item.text));
  const tags = Object.entries(item.labels).map(([name, p]) => {
    const confidence = p.confidence === null ? "" : " " + p.confidence.toFixed(2);
    const from = p.source ? ", " + p.source + (p.source === "model" ? " v" + p.model_version : "") : "";
    return name + ": " + (p.tag === null ? "-" : p.tag) + confidence + from;
  });
  const revised = item.revision ? " · revised" : "";
  entry.append(el("p", new Date(item.ts_out * 1000).toLocaleTimeString() + revised + " · " + tags.join(" · "), { class: "answers" }));
  list.prepend(entry);
  while (list.children.length > 100) list.lastChild.remove();
}

// Server-sent events read with fetch, not EventSource: EventSource cannot send the
// operator token as a header.
async function followStream(event) {
  event.preventDefault();
  stopStream();
  const query = new URLSearchParams();
  const classifier = $("stream-classifier").value;
  if (classifier) query.set("classifier", classifier);
  if ($("stream-tag").value.trim()) query.set("tag", $("stream-tag").value.trim());
  if ($("stream-source").value) query.set("source", $("stream-source").value);
  if ($("stream-confidence").value) query.set("min_confidence", $("stream-confidence").value);
  query.set("since", $("stream-since").value ? String(new Date($("stream-since").value).getTime() / 1000) : String(Date.now() / 1000));
  const controller = new AbortController();
  following = controller;
  $("stream-items").replaceChildren();
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const answer = await fetch("/api/v1/classified/stream?" + query, { headers, signal: controller.signal });
  if (!answer.ok) {
    following = null;
    const data = await answer.json().catch(() => ({}));
    throw new Error(data.error || answer.status + " " + answer.statusText);
  }
  show("stream-status", "following");
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = Object.fromEntries(block.split("\n").filter((l) => l.includes(":")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
        if (fields.event === "item") showItem(JSON.parse(fields.data));
        if (fields.event === "dropped") show("stream-status", "following (some items were skipped: this page fell behind)");
      }
    }
    show("stream-status", "the stream ended");
  } catch (e) {
    if (!controller.signal.aborted) throw e;
    show("stream-status", "stopped");
  }
}

// -- crowd --------------------------------------------------------------------------

function emptyRow(rows, text, columns) {
  rows.replaceChildren(el("tr", null));
  rows.firstChild.append(el("td", text, { colspan: String(columns) }));
}

async function loadCrowd() {
  let pool;
  try {
    pool = await (await call("GET", "/api/v1/operator/pool")).json();
  } catch (e) {
    show("pool-summary", "No web crowd in this worker (the crowd API comes with the annotator when crowd is web): " + e.message);
    emptyRow($("worker-rows"), "-", 8);
    emptyRow($("invite-rows"), "-", 5);
    return;
  }
  const states = Object.entries(pool.workers).map(([k, v]) => v + " " + k).join(", ");
  const latency = pool.mean_latency_s === null ? "-" : pool.mean_latency_s.toFixed(1) + " s";
  show("pool-summary", "Pool of " + pool.target_size + " (" + pool.join_mode + " joining, " + pool.openings + " openings): " + states +
    "; " + pool.queue + " tasks waiting, " + pool.active_tasks + " in hand; mean label latency " + latency + ".");
  const workers = (await (await call("GET", "/api/v1/operator/workers")).json()).workers;
  const rows = $("worker-rows");
  rows.replaceChildren();
  for (const w of workers) {
    const row = el("tr", null, { "data-worker": w.worker_id });
    row.append(el("td", w.name + " (" + w.worker_id + ")"));
    row.append(el("td", w.state, { class: "state" }));
    row.append(el("td", w.answers + (w.terminated ? " (" + w.terminated + " terminated)" : "")));
    row.append(el("td", w.mean_latency_s === null ? "-" : w.mean_latency_s.toFixed(1) + " s"));
    row.append(el("td", w.accuracy === null ? "-" : w.accuracy.toFixed(2), { class: "accuracy" }));
    row.append(el("td", w.earnings.total.toFixed(2)));
    // Why maintenance will release them, or why their session ended.
    const why = w.ended ? w.ended.replace("released:", "released, ").replace("_", " ") : w.marked ? "marked, " + w.marked.replace("_", " ") : "-";
    row.append(el("td", why, { class: "why" }));
    const actions = el("td", null, { class: "actions" });
    if (w.state !== "ended") {
      actions.append(button("Release", () => act(async () => {
        if (!confirm("Release " + w.name + "? Their work so far is paid.")) return;
        await call("POST", "/api/v1/operator/workers/" + encodeURIComponent(w.worker_id) + "/release");
        await loadCrowd();
      }, w.name + " released"), true));
    }
    row.append(actions);
    rows.append(row);
  }
  if (!workers.length) emptyRow(rows, "No workers yet.", 8);
  const invites = (await (await call("GET", "/api/v1/operator/invites")).json()).invites;
  const codes = $("invite-rows");
  codes.replaceChildren();
  for (const invite of invites) {
    const row = el("tr", null, { "data-invite": invite.code });
    row.append(el("td", invite.code, { class: "code" }));
    row.append(el("td", invite.name || "anyone"));
    row.append(el("td", String(invite.uses_left)));
    row.append(el("td", new Date(invite.expires_at * 1000).toLocaleString()));
    const actions = el("td", null, { class: "actions" });
    actions.append(button("Revoke", () => act(async () => {
      await call("DELETE", "/api/v1/operator/invites/" + encodeURIComponent(invite.code));
      await loadCrowd();
    }, "invite revoked"), true));
    row.append(actions);
    codes.append(row);
  }
  if (!invites.length) emptyRow(codes, "No invite codes.", 5);
}

async function createInvites(event) {
  event.preventDefault();
  await act(async () => {
    const request = { count: Number($("invite-count").value), uses: Number($("invite-uses").value) };
    if ($("invite-name").value.trim()) request.name = $("invite-name").value.trim();
    await call("POST", "/api/v1/operator/invites", request);
    await loadCrowd();
  }, "invite codes created");
}

// -- jobs ---------------------------------------------------------------------------

function estimateText(job) {
  const e = job.estimate;
  if (!e) return "-";
  if (e.distinct !== undefined) {  // an enumeration: distinct answers so far, and the total estimated
    const total = e.total_corrected !== null ? ", about " + Math.round(e.total_corrected) + " in all" : "";
    return e.distinct + " distinct" + total + " (coverage " + e.coverage.toFixed(2) + ")";
  }
  if (e.fraction === undefined || e.fraction === null) return "-";
  const ci = e.ci ? " (" + e.ci[0].toFixed(3) + "-" + e.ci[1].toFixed(3) + ")" : "";
  const count = e.count !== undefined && e.count !== null ? ", about " + Math.round(e.count) + " items" : "";
  return e.fraction.toFixed(3) + ci + count;
}

async function loadJobs() {
  const data = await (await call("GET", "/api/v1/jobs")).json();
  const rows = $("job-rows");
  rows.replaceChildren();
  for (const listed of data.jobs) {
    const job = await (await call("GET", "/api/v1/jobs/" + encodeURIComponent(listed.job_id))).json();
    const row = el("tr", null, { "data-job": job.job_id });
    row.append(el("td", job.name ? job.name + " (" + job.job_id + ")" : job.job_id));
    row.append(el("td", job.kind));
    row.append(el("td", job.status + (job.reason ? ": " + job.reason : ""), { class: "status" }));
    row.append(el("td", Object.entries(job.progress).map(([k, v]) => k + " " + v).join(", ")));
    row.append(el("td", job.cost.toFixed(2) + " / " + job.budget.toFixed(2)));
    row.append(el("td", estimateText(job), { class: "estimate" }));
    const actions = el("td", null, { class: "actions" });
    if (!["done", "cancelled", "failed"].includes(job.status)) {
      actions.append(button("Cancel", () => act(async () => {
        await call("POST", "/api/v1/jobs/" + encodeURIComponent(job.job_id) + "/cancel");
        await loadJobs();
      }, "job " + job.job_id + ": cancelling"), true));
    }
    row.append(actions);
    rows.append(row);
  }
  if (!data.jobs.length) {
    rows.append(el("tr", null));
    rows.lastChild.append(el("td", "No jobs yet.", { colspan: "7" }));
  }
}

async function submitJob(event) {
  event.preventDefault();
  await act(async () => {
    let spec;
    try {
      spec = JSON.parse($("job-spec").value);
    } catch (e) {
      throw new Error("the job is not valid JSON: " + e.message);
    }
    const answer = await (await call("POST", "/api/v1/jobs", spec)).json();
    $("job-form").reset();
    await loadJobs();
    show("notice", "job " + answer.job_id + " queued");
  });
}

// -- export -------------------------------------------------------------------------

async function download(event) {
  event.preventDefault();
  await act(async () => {
    const what = $("export-what").value;
    const format = $("export-format").value;
    const since = $("export-since").value ? new Date($("export-since").value).getTime() / 1000 : 0;
    const answer = await call("GET", "/api/v1/export/" + what + "?format=" + format + "&since=" + since);
    const blob = await answer.blob();
    const link = el("a", null, { href: URL.createObjectURL(blob), download: what + "." + format });
    document.body.append(link);
    link.click();
    link.remove();
    show("export-result", what + "." + format + ": " + blob.size + " bytes");
  });
}

// -- webhooks -----------------------------------------------------------------------

async function loadDeliveries() {
  const rows = $("delivery-rows");
  let data;
  try {
    data = await (await call("GET", "/api/v1/webhooks")).json();
  } catch (e) {
    rows.replaceChildren(el("tr", null));
    rows.firstChild.append(el("td", "No notifier in this worker, or no webhooks: " + e.message, { colspan: "6" }));
    return;
  }
  rows.replaceChildren();
  for (const d of data.deliveries) {
    const row = el("tr", null, { class: "outcome-" + d.outcome });
    row.append(el("td", new Date(d.at * 1000).toLocaleString()));
    row.append(el("td", d.event));
    row.append(el("td", d.url));
    row.append(el("td", d.outcome));
    row.append(el("td", String(d.attempts)));
    row.append(el("td", d.status !== null ? "HTTP " + d.status : (d.error || "-")));
    rows.append(row);
  }
  if (!data.deliveries.length) {
    rows.append(el("tr", null));
    rows.lastChild.append(el("td", "No deliveries yet.", { colspan: "6" }));
  }
}

// -- page ---------------------------------------------------------------------------

function tab(name) {
  if (name !== "stream") stopStream();  // a stream holds one of the worker's slots
  show("notice", "");
  show("error", "");
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.tab === name));
  for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.id !== name;
  if (name === "labels") act(loadLabels);
  if (name === "learning") act(loadLearning);
  if (name === "webhooks") act(loadDeliveries);
  if (name === "jobs") act(loadJobs);
  if (name === "crowd") act(loadCrowd);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("crowdstream-operator", $("token").value);
    act(loadClassifiers, "signed in");
  });
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => tab(b.dataset.tab));
  $("add-form").addEventListener("submit", addClassifier);
  $("labels-form").addEventListener("submit", (event) => act(() => loadLabels(event)));
  $("learning-form").addEventListener("submit", (event) => act(() => loadLearning(event)));
  $("stream-form").addEventListener("submit", (event) => act(() => followStream(event)));
  $("stream-stop").addEventListener("click", stopStream);
  $("invite-form").addEventListener("submit", createInvites);
  $("export-form").addEventListener("submit", download);
  $("job-form").addEventListener("submit", submitJob);
  act(loadClassifiers);
  // Models, states and estimates change on the running pipeline: keep the tables current.
  setInterval(() => {
    if (!$("classifiers").hidden) loadClassifiers().catch(() => {});
    if (!$("jobs").hidden) loadJobs().catch(() => {});
    if (!$("learning").hidden) loadLearning().catch(() => {});
    if (!$("crowd").hidden) loadCrowd().catch(() => {});
  }, 3000);
});
