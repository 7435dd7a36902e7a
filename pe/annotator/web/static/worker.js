// The worker page: join, qualify, wait, label. Tasks are pushed as server-sent
// events over one streaming fetch (it can carry the token header, EventSource cannot).
// Text from the stream is only ever set with textContent, so it shows as text.
"use strict";

const API = "/api/v1";
const NA = "N/A";
const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("crowdstream.token"),
  assignment: null,
  quiz: [],
  quizAnswers: {},
  heartbeatS: 15,
  heartbeat: null,
  stream: null,
  noticeTimer: null,
  ended: false,
};

function show(view) {
  if (view !== "task") delete document.body.dataset.assignment;
  for (const section of document.querySelectorAll("section[data-view]")) {
    section.hidden = section.dataset.view !== view;
  }
  document.body.dataset.view = view;
  $("leave").hidden = !["waiting", "task", "qualify"].includes(view);
}

function error(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function notice(message, seconds) {
  const box = $("notice");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => { box.hidden = true; }, seconds * 1000);
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const res = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.status = res.status;
    err.reason = data && data.reason;
    err.retryAfter = Number(res.headers.get("Retry-After")) || 0;
    throw err;
  }
  return data;
}

// A call that may succeed if sent again: the connection dropped (no status), the
// server asked to slow down, or it was restarting.
function transient(err) {
  return err.status === undefined || err.status === 429 || err.status >= 500;
}

// ``call()`` again while it fails in a way ``retryable`` says a later try may not, up
// to ``tries`` in all, after the wait the server asked for (or 1, 2, 4 ... s);
// ``waiting(seconds)`` hears of each wait.
async function retried(call, tries, retryable, waiting) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!retryable(err) || attempt >= tries) throw err;
      const seconds = err.retryAfter || 2 ** (attempt - 1);
      if (waiting) waiting(seconds);
      await sleep(1000 * seconds);
    }
  }
}

// An answer counts once however often it is sent (the server keeps the first), so
// one lost on its way is sent again, as a browser resends a request whose kept-alive
// connection the server had just closed.
const ANSWER_TRIES = 4;

function sendAnswer(body) {
  return retried(() => api("POST", "/workers/me/answers", body), ANSWER_TRIES, transient);
}

// A join refused for the rate (429) was never made, so it is sent again: people who
// join at once from one address (a shelter's network) get in without clicking again.
// Other failures are shown: a join lost on its way may have been made.
const JOIN_TRIES = 8;

function joinPool(body) {
  return retried(
    () => api("POST", "/workers", body),
    JOIN_TRIES,
    (err) => err.status === 429,
    (seconds) => error(`Many people are joining: trying again in ${seconds} s.`),
  );
}

function money(x) { return Number(x || 0).toFixed(2); }

function showEarnings(e) {
  if (!e) return;
  $("earnings").textContent = money(e.total);
  $("earnings-detail").textContent =
    `(waiting ${money(e.waiting)}, work ${money(e.work)}: ${e.records} record(s)` +
    (e.terminated_records ? `, ${e.terminated_records} finished first by others` : "") + ")";
}

function setToken(data) {
  if (data.token) {
    state.token = data.token;
    sessionStorage.setItem("crowdstream.token", data.token);
  }
  if (data.heartbeat_s) state.heartbeatS = data.heartbeat_s;
}

function tagButtons(container, tags, onPick) {
  container.replaceChildren();
  tags.forEach((tag, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.tag = tag;
    button.append(tag);
    if (i < 9) {
      const key = document.createElement("kbd");
      key.textContent = String(i + 1);
      button.append(key);
    }
    button.addEventListener("click", () => onPick(tag));
    container.append(button);
  });
}

// -- states ------------------------------------------------------------------------

function apply(status) {
  $("who").textContent = status.name ? `signed in as ${status.name}` : "";
  showEarnings(status.earnings);
  if (status.state === "ended") return;
  if (status.state === "qualifying") {
    state.quiz = status.qualification;
    state.quizAnswers = {};
    showQuiz();
  } else if (status.assignment) {
    showTask(status.assignment);
  } else {
    state.assignment = null;
    show("waiting");
  }
}

function showQuiz() {
  const done = Object.keys(state.quizAnswers).length;
  const item = state.quiz[done];
  $("quiz-progress").textContent = `${done + 1} of ${state.quiz.length}`;
  $("quiz-question").textContent = item.question;
  $("quiz-text").textContent = item.text;
  tagButtons($("quiz-tags"), item.tags, (tag) => answerQuiz(item.gold_id, tag));
  show("qualify");
}

async function answerQuiz(goldId, tag) {
  state.quizAnswers[goldId] = tag;
  if (Object.keys(state.quizAnswers).length < state.quiz.length) {
    showQuiz();
    return;
  }
  try {
    const result = await api("POST", "/workers/me/qualification", { answers: state.quizAnswers });
    if (result.admitted && !state.assignment) show("waiting");
  } catch (err) {
    handleError(err);
  }
}

function showTask(assignment) {
  state.assignment = assignment;
  document.body.dataset.assignment = assignment.assignment_id;
  $("task-classifier").textContent = assignment.classifier;
  $("task-question").textContent = assignment.question;
  const examples = assignment.examples || [];
  $("task-example-list").replaceChildren(...examples.map((e) => {
    const item = document.createElement("li");
    const tag = document.createElement("strong");
    tag.textContent = e.tag;
    item.append(e.text, " → ", tag);  // text nodes: never markup
    return item;
  }));
  $("task-examples").hidden = examples.length === 0;
  $("task-text").textContent = assignment.text;
  tagButtons($("task-tags"), assignment.tags, answerTask);
  $("skip").hidden = assignment.na_allowed === false;  // every answer is a tag then
  setBusy(false);
  show("task");
}

function setBusy(busy) {
  for (const button of document.querySelectorAll("#task-tags button, #skip")) {
    button.disabled = busy;
  }
}

async function answerTask(tag) {
  const current = state.assignment;
  if (!current) return;
  setBusy(true);
  let received = true;
  try {
    const result = await sendAnswer({ assignment_id: current.assignment_id, tag });
    showEarnings(result.earnings);
    if (result.outcome === "terminated") notice(result.message, 4);
  } catch (err) {
    handleError(err);
    received = !transient(err);
  }
  // The next task may already have arrived on the stream while this was sent.
  if (state.assignment !== current) return;
  if (received) {
    state.assignment = null;
    show("waiting");
  } else {
    setBusy(false);  // never received: the task is still theirs, to answer again
  }
}

function ended(data) {
  state.ended = true;
  state.assignment = null;
  stopSession();
  showEarnings(data.earnings);
  $("ended-title").textContent = data.reason === "released" || data.reason === "left"
    ? "Thank you!" : "Session ended";
  $("ended-message").textContent = data.message || "";
  // Released and failed workers are not invited back; others (timed out) may rejoin.
  $("rejoin").hidden = ["released", "failed_qualification"].includes(data.reason);
  show("ended");
}

// A 410 names why the session ended: a call may learn of the end before the
// stream's "ended" event arrives, and the worker must see the same farewell.
function sessionOver(message, reason) {
  sessionStorage.removeItem("crowdstream.token");
  state.token = null;
  ended({ reason: reason || "over", message: message || "Your session has ended." });
}

function handleError(err) {
  if (err.status === 401 || err.status === 410) sessionOver(err.message, err.reason);
  else error(err.message);
}

// -- events ------------------------------------------------------------------------

function onEvent(name, data) {
  if (name === "status") apply(data);
  else if (name === "task") { error(""); showTask(data); }
  else if (name === "terminated") {
    showEarnings(data.earnings);
    notice(data.message, 4);
    if (state.assignment && state.assignment.assignment_id === data.assignment_id) {
      state.assignment = null;
      show("waiting");
    }
  } else if (name === "ended") ended(data);
}

function parseBlock(block) {
  let name = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (data) onEvent(name, JSON.parse(data));
}

async function listen() {
  while (state.token && !state.ended) {
    const abort = new AbortController();
    state.stream = abort;
    try {
      const res = await fetch(API + "/workers/me/tasks", {
        headers: { Authorization: "Bearer " + state.token }, signal: abort.signal,
      });
      if (res.status === 401 || res.status === 410) {
        const body = await res.json().catch(() => ({}));
        sessionOver(body.error, body.reason);
        return;
      }
      if (!res.ok) throw new Error(res.statusText);
      $("connection").hidden = true;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (_) {
      if (abort.signal.aborted) return;
    }
    if (state.ended) return;
    $("connection").hidden = false;
    await sleep(2000);
  }
}

async function beat() {
  try {
    const status = await api("POST", "/workers/me/heartbeat");
    setToken(status);
    showEarnings(status.earnings);
  } catch (err) {
    if (err.status === 401 || err.status === 410) sessionOver(err.message, err.reason);
  }
}

function startSession() {
  state.ended = false;
  clearInterval(state.heartbeat);
  state.heartbeat = setInterval(beat, state.heartbeatS * 1000);
  listen();
}

function stopSession() {
  clearInterval(state.heartbeat);
  if (state.stream) state.stream.abort();
}

// -- wiring ------------------------------------------------------------------------

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  error("");
  const name = $("name").value.trim();
  const invite = $("invite").value.trim();
  const body = {};
  if (name) body.name = name;
  if (invite) body.invite = invite;
  $("join-button").disabled = true;
  try {
    state.token = null;
    const status = await joinPool(body);
    error("");
    setToken(status);
    apply(status);
    startSession();
  } catch (err) {
    error(err.message);
  } finally {
    $("join-button").disabled = false;
  }
});

$("skip").addEventListener("click", () => answerTask(NA));

$("leave").addEventListener("click", async () => {
  try {
    await api("POST", "/workers/me/leave");
  } catch (err) {
    handleError(err);
  }
});

$("rejoin").addEventListener("click", () => {
  sessionStorage.removeItem("crowdstream.token");
  state.token = null;
  state.ended = false;
  show("join");
});

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  const view = document.body.dataset.view;
  const container = view === "task" ? $("task-tags") : view === "qualify" ? $("quiz-tags") : null;
  if (!container) return;
  if (view === "task" && (event.key === "0" || event.key.toLowerCase() === "s")) {
    if (!$("skip").hidden) $("skip").click();
    return;
  }
  const index = Number(event.key) - 1;
  const buttons = container.querySelectorAll("button");
  if (index >= 0 && index < 9 && buttons[index] && !buttons[index].disabled) buttons[index].click();
});

// A reload keeps the session: its assignment comes back on the stream's first status.
(async () => {
  if (!state.token) { show("join"); return; }
  try {
    const status = await api("GET", "/workers/me");
    if (status.state === "ended") { sessionOver(); return; }
    apply(status);
    startSession();
  } catch (_) {
    sessionStorage.removeItem("crowdstream.token");
    state.token = null;
    show("join");
  }
})();
