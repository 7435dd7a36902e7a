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
    } catch (e) { /* not JSON */ }
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
  const select = $("labels-classifier");
  const chosen = select.value;
  select.replaceChildren(...classifiers.filter((r) => r.state !== "retired").map((r) => el("option", r.spec.name, { value: r.spec.name })));
  if (chosen) select.value = chosen;
}

async function addClassifier(event) {
  event.preventDefault();
  await act(async () => {
    const gold = $("add-gold").value.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
    const spec = {
      name: $("add-name").value.trim(),
      question: $("add-question").value.trim(),
      tags: $("add-tags").value.split(",").map((t) => t.trim()).filter((t) => t),
      gold,
    };
    await call("POST", "/api/v1/classifiers", spec);
    $("add-form").reset();
    await loadClassifiers();
  }, "classifier added: it gets crowd tasks now, and a model after its first labels");
}

// -- labels -------------------------------------------------------------------------

async function loadLabels(event) {
  if (event) event.preventDefault();
  const name = $("labels-classifier").value;
  if (!name) return;
  const query = "?classifier=" + encodeURIComponent(name) + "&limit=50" + ($("labels-corrected").checked ? "&corrected=true" : "");
  const data = await (await call("GET", "/api/v1/labels" + query)).json();
  const record = classifiers.find((r) => r.spec.name === name);
  const list = $("label-list");
  list.replaceChildren();
  for (const label of data.labels) {
    const item = el("li", null, { "data-item": label.item_id });
    item.append(el("blockquote", label.text || "(no text)"));
    const tag = label.tag === null ? "no agreement" : label.tag;
    const who = label.corrected_by ? "set by " + label.corrected_by : "crowd";
    const posterior = label.posterior === null ? "" : ", posterior " + label.posterior.toFixed(2);
    item.append(el("p", "Tag: " + tag + " (" + who + posterior + ", agreement " + label.agreement.toFixed(2) + ")", { class: "tag" }));
    item.append(el("p", "Answers: " + label.answers.map((a) => a.worker_id + " " + (a.tag === null ? "N/A" : a.tag)).join(", "), { class: "answers" }));
    const fix = el("div", null, { class: "fix" });
    for (const option of record ? record.spec.tags : []) {
      if (option === label.tag) continue;
      fix.append(button("Set " + option, () => act(async () => {
        await call("POST", "/api/v1/labels/" + name + "/" + encodeURIComponent(label.item_id) + "/correct", { tag: option });
        await loadLabels();
      }, "label corrected: the next model learns it"), true));
    }
    item.append(fix);
    list.append(item);
  }
  if (!data.labels.length) list.append(el("li", "No labels yet."));
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
  show("notice", "");
  show("error", "");
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.tab === name));
  for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.id !== name;
  if (name === "labels") act(loadLabels);
  if (name === "webhooks") act(loadDeliveries);
  if (name === "jobs") act(loadJobs);
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
  $("export-form").addEventListener("submit", download);
  $("job-form").addEventListener("submit", submitJob);
  act(loadClassifiers);
  // Models, states and estimates change on the running pipeline: keep the tables current.
  setInterval(() => {
    if (!$("classifiers").hidden) loadClassifiers().catch(() => {});
    if (!$("jobs").hidden) loadJobs().catch(() => {});
  }, 3000);
});
