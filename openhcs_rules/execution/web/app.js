// The execution server's page: runs, a live plate map of the selected run, cancel/abort/resume, its log and
// results, and a form to submit a screen. Plain ES module, no build step, nothing loaded from elsewhere.
//
// Everything the server sends is untrusted text (run ids, messages, logs, file names): it reaches the page
// only through textContent and attributes, never innerHTML. Every /api call carries the token in an
// Authorization header; that is why the event stream is read with fetch + ReadableStream (EventSource
// cannot send headers).

const TOKEN_KEY = "openhcs-execution-token";
const DEFAULT_PIPELINE = "nuclei_count"; // preselected when the server's library has it
const POLL_MS = 2500;
const LOG_TAIL = 200;
const RESULTS_EVERY_MS = 10000;
const PLATES_EVERY_MS = 4000; // the plates' layout appears once discovery ran; wells missed by a dropped stream
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
const CAN_CANCEL = new Set(["queued", "running"]);
const CAN_ABORT = new Set(["queued", "running", "draining"]);
const CAN_RESUME = new Set(["cancelled", "failed", "interrupted"]);
const ACTIVE = new Set(["running", "draining", "aborting"]);
const WELL_STATES = ["pending", "running", "done", "failed", "skipped"];
// viridis, sampled at 9 points: a sequential scale readable in grey and by most colour-blind readers
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  user: null,
  operator: false,
  runs: [],
  runsKey: "",
  pollTimer: null,
  polling: false,
  selected: null, // see newSelection()
};

// -- helpers --------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

class Unauthorized extends Error {}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function runPath(runId, rest = "") {
  return `/api/runs/${encodeURIComponent(runId)}${rest}`;
}

function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const date = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return clock;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function showNotice(text) {
  const notice = $("notice");
  notice.replaceChildren(
    el("span", { text }),
    el("button", { type: "button", class: "quiet", text: "Dismiss", onclick: () => (notice.hidden = true) }),
  );
  notice.hidden = false;
}

// -- the token ------------------------------------------------------------------------------------------
function takeTokenFromUrl() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  // the token must not stay in the address bar, the history, or a bookmark
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

function askForToken(refused) {
  stopEverything();
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("who").hidden = true;
  $("token-panel").hidden = false;
  $("token-refused").hidden = !refused;
  $("token-input").value = "";
  $("token-input").focus();
}

function stopEverything() {
  if (state.pollTimer !== null) clearTimeout(state.pollTimer);
  state.pollTimer = null;
  if (state.selected) stopStream(state.selected);
  state.selected = null;
  state.runsKey = "";
}

// -- the API --------------------------------------------------------------------------------------------
async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    signal,
  });
  if (response.status === 401) {
    askForToken(true);
    throw new Unauthorized("the server did not accept the token");
  }
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const data = await response.json();
      code = data.code || code;
      message = data.error || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, code, message);
  }
  if (raw) return response;
  return response.json();
}

function reportError(error, what) {
  if (error instanceof Unauthorized) return;
  if (error instanceof DOMException && error.name === "AbortError") return;
  showNotice(`${what}: ${error.message}`);
}

// -- runs table -----------------------------------------------------------------------------------------
function runsKey(runs) {
  return JSON.stringify(
    runs.map((r) => [r.run_id, r.owner, r.state, r.queue_position, r.plates, r.started_at, r.ended_at, r.exit_code]),
  );
}

function stateBadge(runState) {
  return el("span", { class: `badge state state-${runState}`, text: runState });
}

function renderRuns() {
  const body = $("runs-body");
  const key = runsKey(state.runs) + `|${state.selected ? state.selected.runId : ""}`;
  if (key === state.runsKey) return;
  state.runsKey = key;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.runId : null;
  const rows = state.runs.map((run) => {
    const selected = state.selected && state.selected.runId === run.run_id;
    const row = el(
      "tr",
      {
        tabindex: "0",
        class: selected ? "selected" : "",
        "aria-selected": selected ? "true" : "false",
        "data-run-id": run.run_id,
        "data-state": run.state,
        title: `Show run ${run.run_id}`,
        onclick: () => selectRun(run.run_id),
        onkeydown: (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            selectRun(run.run_id);
          }
        },
      },
      el("td", { class: "mono", text: run.run_id }),
      el("td", { text: run.owner }),
      el("td", {}, stateBadge(run.state)),
      el("td", { class: "num", text: run.queue_position ?? "" }),
      el("td", { text: (run.plates || []).join(", ") }),
      el("td", { class: "time", text: formatTime(run.started_at) }),
      el("td", { class: "time", text: formatTime(run.ended_at) }),
      el("td", { class: "num", text: run.exit_code ?? "" }),
    );
    return row;
  });
  body.replaceChildren(...rows);
  $("runs-empty").hidden = state.runs.length > 0;
  if (focused) {
    const again = body.querySelector(`tr[data-run-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

async function refreshRuns() {
  const everyone = state.operator && $("all-runs").checked;
  const data = await api(`/api/runs${everyone ? "?all=true" : ""}`);
  const runs = Array.isArray(data.runs) ? data.runs : [];
  runs.sort((a, b) => (b.created_at || 0) - (a.created_at || 0) || String(b.run_id).localeCompare(String(a.run_id)));
  const sel0 = state.selected;
  if (sel0 && sel0.run) {
    // an answer computed before the newest event the stream brought keeps that event's state
    const index = runs.findIndex((run) => run.run_id === sel0.runId);
    if (index >= 0 && (runs[index].last_seq ?? 0) < (sel0.run.last_seq ?? 0)) {
      runs[index] = { ...runs[index], state: sel0.run.state, exit_code: sel0.run.exit_code };
    }
  }
  state.runs = runs;
  renderRuns();
  $("runs-updated").textContent = `updated ${formatTime(Date.now() / 1000)}`;
  const sel = state.selected;
  if (sel) {
    const fresh = runs.find((run) => run.run_id === sel.runId);
    if (fresh) updateSelectedRun(sel, fresh);
  }
}

async function pollLoop() {
  if (state.polling) return;
  state.polling = true;
  try {
    await refreshRuns();
    if (state.selected) await refreshDetail(state.selected);
  } catch (error) {
    reportError(error, "Could not refresh the runs");
  } finally {
    state.polling = false;
    if (state.token) state.pollTimer = setTimeout(pollLoop, POLL_MS);
  }
}

// -- the selected run -----------------------------------------------------------------------------------
function newSelection(runId) {
  return {
    runId,
    run: null,
    plates: new Map(), // name -> {rows, columns, wells: Map(key -> {name, state, objects, error})}
    lastSeq: 0,
    progress: null, // {done, total}
    stream: null, // AbortController of the running stream reader
    logFresh: false, // the log and results were read after the run ended
    resultsAt: 0,
    platesAt: 0,
    renderQueued: false,
    loaded: false, // its plates were read once: the stream may start
  };
}

function selectRun(runId, run = null) {
  if (state.selected && state.selected.runId === runId) return;
  if (state.selected) stopStream(state.selected);
  const sel = newSelection(runId);
  state.selected = sel;
  $("run-none").hidden = true;
  $("run-detail").hidden = false;
  $("run-id").textContent = runId;
  $("log").textContent = "";
  $("results").replaceChildren();
  $("results-empty").hidden = false;
  $("plates").replaceChildren();
  state.runsKey = "";
  renderRuns();
  const known = run || state.runs.find((r) => r.run_id === runId);
  if (known) updateSelectedRun(sel, known);
  loadSelection(sel).catch((error) => reportError(error, `Could not load run ${runId}`));
}

async function loadSelection(sel) {
  if (!sel.run) updateSelectedRun(sel, await api(runPath(sel.runId)));
  if (state.selected !== sel) return;
  try {
    await refreshPlates(sel);
  } catch (error) {
    if (error instanceof Unauthorized) return;
    reportError(error, "Could not read the run's plates"); // the events still fill the map in
  }
  if (state.selected !== sel) return;
  sel.loaded = true;
  startStream(sel);
  await refreshDetail(sel, true);
}

function updateSelectedRun(sel, run) {
  const before = sel.run ? sel.run.state : null;
  if (sel.run && (run.last_seq ?? 0) < (sel.run.last_seq ?? 0)) {
    run = { ...run, state: sel.run.state, exit_code: sel.run.exit_code, last_seq: sel.run.last_seq }; // older news
  }
  sel.run = run;
  if (state.selected !== sel) return;
  const badge = $("run-state");
  badge.hidden = false;
  badge.className = `badge state state-${run.state}`;
  badge.textContent = run.state;
  $("run-owner").textContent = run.owner;
  const message = $("run-message");
  message.textContent = run.message || "";
  message.hidden = !run.message;
  $("btn-cancel").disabled = !CAN_CANCEL.has(run.state);
  $("btn-abort").disabled = !CAN_ABORT.has(run.state);
  $("btn-resume").disabled = !CAN_RESUME.has(run.state);
  if (!TERMINAL.has(run.state)) {
    sel.logFresh = false;
    if (!sel.stream && sel.loaded && before !== null) startStream(sel); // resumed: follow it again
  }
  renderProgress(sel);
}

async function refreshDetail(sel, force = false) {
  if (!sel.run || state.selected !== sel) return;
  const ended = TERMINAL.has(sel.run.state);
  if (ended && sel.logFresh && !force) return;
  const wants = [api(runPath(sel.runId, `/logs?tail=${LOG_TAIL}`))];
  const now = Date.now();
  const resultsDue = force || ended || now - sel.resultsAt >= RESULTS_EVERY_MS;
  if (resultsDue) wants.push(api(runPath(sel.runId, "/results")));
  else wants.push(null);
  if (!ended && sel.loaded && now - sel.platesAt >= PLATES_EVERY_MS) wants.push(refreshPlates(sel));
  const [logs, results] = await Promise.all(wants);
  if (state.selected !== sel) return;
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = logs.log || "";
  if (atBottom) log.scrollTop = log.scrollHeight;
  if (results) {
    sel.resultsAt = now;
    renderResults(sel, results.files || []);
  }
  if (ended) {
    sel.logFresh = true;
    if (!sel.stream) await refreshPlates(sel);
  }
}

function renderResults(sel, files) {
  const list = $("results");
  // the plate's own outputs (wells.csv, objects.csv, heatmap, OME-Zarr) before the per-well files
  const depth = (path) => path.split("/").length;
  files = [...files].sort((a, b) => depth(a.path) - depth(b.path) || a.path.localeCompare(b.path));
  const items = files.map((file) => {
    const name = file.path.split("/").pop();
    if (file.kind === "ome-zarr") {
      return el(
        "li",
        {},
        el("span", { class: "mono path", text: file.path }),
        " ",
        el("span", { class: "badge kind", text: "OME-Zarr", title: "a folder of many files: open it with a viewer on the server" }),
      );
    }
    return el(
      "li",
      {},
      el("button", {
        type: "button",
        class: "link mono path",
        text: file.path,
        title: `Download ${name}`,
        "data-path": file.path,
        onclick: (event) => downloadResult(sel.runId, file.path, event.currentTarget),
      }),
      " ",
      el("span", { class: "muted small", text: formatBytes(file.bytes) }),
    );
  });
  list.replaceChildren(...items);
  $("results-empty").hidden = files.length > 0;
}

async function downloadResult(runId, path, button) {
  button.disabled = true;
  try {
    const encoded = path.split("/").map(encodeURIComponent).join("/");
    const response = await api(runPath(runId, `/files/${encoded}`), { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: path.split("/").pop(), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    reportError(error, `Could not download ${path}`);
  } finally {
    button.disabled = false;
  }
}

async function runAction(kind) {
  const sel = state.selected;
  if (!sel) return;
  const buttons = [$("btn-cancel"), $("btn-abort"), $("btn-resume")];
  for (const button of buttons) button.disabled = true;
  try {
    let run;
    if (kind === "resume") run = await api(runPath(sel.runId, "/resume"), { method: "POST", body: {} });
    else run = await api(runPath(sel.runId, "/cancel"), { method: "POST", body: { mode: kind } });
    if (state.selected === sel) updateSelectedRun(sel, run);
    await refreshRuns();
  } catch (error) {
    reportError(error, `Could not ${kind === "resume" ? "resume" : kind === "abort" ? "abort" : "cancel"} the run`);
    if (sel.run && state.selected === sel) updateSelectedRun(sel, sel.run);
  }
}

// -- the event stream -----------------------------------------------------------------------------------
function stopStream(sel) {
  if (sel.stream) sel.stream.abort();
  sel.stream = null;
}

function startStream(sel) {
  if (sel.stream || state.selected !== sel) return;
  const controller = new AbortController();
  sel.stream = controller;
  followStream(sel, controller)
    .catch((error) => reportError(error, "The run's event stream stopped"))
    .finally(() => {
      if (sel.stream === controller) sel.stream = null;
    });
}

async function followStream(sel, controller) {
  let backoff = 500;
  let failuresAfterEnd = 0;
  while (!controller.signal.aborted && state.selected === sel) {
    let endedCleanly = false;
    try {
      const response = await api(runPath(sel.runId, `/stream?after=${sel.lastSeq}`), {
        raw: true,
        signal: controller.signal,
      });
      await readEvents(sel, response.body, controller.signal);
      endedCleanly = true;
      backoff = 500;
    } catch (error) {
      if (controller.signal.aborted || error instanceof Unauthorized) return;
      if (error instanceof ApiError && error.status === 404) return; // the run is gone (or not ours)
      // a dropped connection: reconnect below, from the last event seen
    }
    if (controller.signal.aborted) return;
    // the stream ends after the run's terminal state; otherwise it dropped: reconnect from the last seq
    try {
      const run = await api(runPath(sel.runId), { signal: controller.signal });
      if (state.selected === sel) updateSelectedRun(sel, run);
      await refreshPlates(sel);
      if (TERMINAL.has(run.state) && (run.last_seq <= sel.lastSeq || failuresAfterEnd >= 3)) {
        await refreshDetail(sel, true);
        return; // the poll starts a new stream if the run is resumed
      }
      if (TERMINAL.has(run.state) && !endedCleanly) failuresAfterEnd += 1;
    } catch (error) {
      if (controller.signal.aborted || error instanceof Unauthorized) return;
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

async function readEvents(sel, body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal.addEventListener("abort", onAbort);
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseFrame(frame);
        if (event) applyEvent(sel, event);
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function parseFrame(frame) {
  const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
}

// -- plates ---------------------------------------------------------------------------------------------
function wellKey(name) {
  const match = /^([A-Za-z]+)0*(\d+)$/.exec(String(name));
  return match ? `${match[1].toUpperCase()}${Number(match[2])}` : String(name);
}

function rowIndex(letters) {
  let index = 0;
  for (const char of letters.toUpperCase()) index = index * 26 + (char.charCodeAt(0) - 64);
  return index;
}

function rowName(index) {
  let name = "";
  for (let n = index; n > 0; n = Math.floor((n - 1) / 26)) name = String.fromCharCode(65 + ((n - 1) % 26)) + name;
  return name;
}

function plateOf(sel, name) {
  let plate = sel.plates.get(name);
  if (!plate) {
    plate = { rows: [], columns: [], wells: new Map(), fromServer: false };
    sel.plates.set(name, plate);
  }
  return plate;
}

function setWell(plate, well, changes, seq = 0) {
  const key = wellKey(well);
  const current = plate.wells.get(key) || { name: well, state: "pending", objects: null, seq: 0 };
  plate.wells.set(key, { ...current, ...changes, seq: Math.max(current.seq || 0, seq) });
}

async function refreshPlates(sel) {
  // a well an event changed after this request was sent keeps the event's state: it is newer
  const seenBefore = sel.lastSeq;
  sel.platesAt = Date.now();
  const data = await api(runPath(sel.runId, "/plates"));
  if (state.selected !== sel) return;
  for (const [name, info] of Object.entries(data.plates || {})) {
    const plate = plateOf(sel, name);
    plate.rows = Array.isArray(info.rows) ? info.rows.map(String) : [];
    plate.columns = Array.isArray(info.columns) ? info.columns.map(Number) : [];
    plate.fromServer = true;
    for (const [well, entry] of Object.entries(info.wells || {})) {
      const known = plate.wells.get(wellKey(well));
      if (known && known.seq > seenBefore) continue;
      const wellState = WELL_STATES.includes(entry.state) ? entry.state : "pending";
      const changes = { state: wellState };
      if (entry.objects !== undefined && entry.objects !== null) changes.objects = Number(entry.objects);
      else if (wellState !== "done") changes.objects = null;
      setWell(plate, well, changes);
    }
  }
  scheduleRender(sel);
}

function nothingRuns(sel) {
  for (const plate of sel.plates.values()) {
    for (const [key, well] of plate.wells) {
      if (well.state === "running") plate.wells.set(key, { ...well, state: "pending", seq: sel.lastSeq });
    }
  }
}

function applyEvent(sel, event) {
  if (typeof event.seq !== "number" || event.seq <= sel.lastSeq) return; // a replay we already have
  sel.lastSeq = event.seq;
  const body = event.body || {};
  switch (event.type) {
    case "progress":
      if (typeof body.done === "number" && typeof body.total === "number") sel.progress = body;
      break;
    case "run_started":
      nothingRuns(sel); // a new Snakemake process: wells left running by the last one will be redone
      break;
    case "run_state":
      if (!ACTIVE.has(body.state)) nothingRuns(sel);
      // a replayed state is history (the run record is newer); a new one is news before the next poll
      if (sel.run && body.state && event.seq > (sel.run.last_seq || 0)) {
        const exitCode = body.exit_code ?? sel.run.exit_code;
        updateSelectedRun(sel, { ...sel.run, state: body.state, exit_code: exitCode, last_seq: event.seq });
        if (TERMINAL.has(body.state)) sel.logFresh = false;
        // the table says the same until its next refresh brings the rest (ended_at, queue positions)
        const row = state.runs.find((run) => run.run_id === sel.runId);
        if (row && row.state !== body.state && event.seq > (row.last_seq || 0)) {
          row.last_seq = event.seq;
          row.state = body.state;
          if (body.exit_code !== undefined) row.exit_code = body.exit_code;
          renderRuns();
        }
      }
      break;
    case "well_started":
      if (body.plate && body.well) {
        setWell(plateOf(sel, body.plate), body.well, { state: "running", objects: null, error: null }, event.seq);
      }
      break;
    case "well_finished":
      if (body.plate && body.well) {
        const objects = Number.isInteger(body.objects) && body.objects >= 0 ? body.objects : null;
        setWell(plateOf(sel, body.plate), body.well, { state: "done", objects, seconds: body.seconds ?? null }, event.seq);
      }
      break;
    case "well_failed":
      if (body.plate && body.well) {
        setWell(plateOf(sel, body.plate), body.well, { state: "failed", objects: null, error: body.error }, event.seq);
      }
      break;
    case "well_skipped":
      if (body.plate && body.well) {
        // a resumed run skips the wells it finished before: they stay done, with their count
        const plate = plateOf(sel, body.plate);
        const current = plate.wells.get(wellKey(body.well));
        if (!current || current.state !== "done") setWell(plate, body.well, { state: "skipped", objects: null }, event.seq);
      }
      break;
    default:
      break;
  }
  scheduleRender(sel);
}

function scheduleRender(sel) {
  if (sel.renderQueued) return;
  sel.renderQueued = true;
  requestAnimationFrame(() => {
    sel.renderQueued = false;
    if (state.selected !== sel) return;
    renderPlates(sel);
    renderProgress(sel);
  });
}

function objectRange(sel) {
  let low = Infinity;
  let high = -Infinity;
  for (const plate of sel.plates.values()) {
    for (const well of plate.wells.values()) {
      if (well.state === "done" && typeof well.objects === "number") {
        low = Math.min(low, well.objects);
        high = Math.max(high, well.objects);
      }
    }
  }
  return low <= high ? [low, high] : null;
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function scaleColour(fraction) {
  const t = Math.min(1, Math.max(0, fraction)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
  const a = hexToRgb(VIRIDIS[i]);
  const b = hexToRgb(VIRIDIS[i + 1]);
  const f = t - i;
  return a.map((channel, k) => Math.round(channel + (b[k] - channel) * f));
}

function wellColour(range, objects) {
  if (!range) return scaleColour(0.5);
  const [low, high] = range;
  return scaleColour(high === low ? 0.5 : (objects - low) / (high - low));
}

function luminance([r, g, b]) {
  return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}

function plateGrid(plate) {
  // rows and columns from the server; for a plate only the events named yet, those of its wells
  let rows = plate.rows;
  let columns = plate.columns;
  if (!rows.length || !columns.length) {
    let maxRow = 0;
    let maxCol = 0;
    for (const key of plate.wells.keys()) {
      const match = /^([A-Z]+)(\d+)$/.exec(key);
      if (!match) continue;
      maxRow = Math.max(maxRow, rowIndex(match[1]));
      maxCol = Math.max(maxCol, Number(match[2]));
    }
    rows = Array.from({ length: maxRow }, (_, i) => rowName(i + 1));
    columns = Array.from({ length: maxCol }, (_, i) => i + 1);
  }
  return { rows, columns };
}

function wellLabel(name, well) {
  if (!well) return `${name}: not in this screen`;
  let text = `${name}: ${well.state}`;
  if (typeof well.objects === "number") text += `, ${well.objects} objects`;
  if (typeof well.seconds === "number") text += `, ${well.seconds.toFixed(1)} s`;
  if (well.error) text += ` — ${well.error}`;
  return text;
}

function renderPlates(sel) {
  const range = objectRange(sel);
  const container = $("plates");
  const figures = [];
  for (const [name, plate] of [...sel.plates.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const { rows, columns } = plateGrid(plate);
    const counts = { pending: 0, running: 0, done: 0, failed: 0, skipped: 0 };
    for (const well of plate.wells.values()) counts[well.state] = (counts[well.state] || 0) + 1;
    const size = columns.length > 24 ? "tiny" : columns.length > 12 ? "small" : "large";
    const head = el("tr", {}, el("th", { scope: "col", class: "corner", "aria-label": "row / column" }));
    for (const column of columns) head.append(el("th", { scope: "col", text: column }));
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr", {}, el("th", { scope: "row", text: row }));
      for (const column of columns) {
        const name2 = `${row}${String(column).padStart(2, "0")}`;
        const well = plate.wells.get(wellKey(name2));
        const label = wellLabel(well ? well.name : name2, well);
        const cell = el("td", {
          class: `well ${well ? `well-${well.state}` : "well-none"}`,
          title: label,
          "aria-label": label,
          "data-well": well ? well.name : name2,
          "data-state": well ? well.state : "none",
          "data-objects": well && typeof well.objects === "number" ? well.objects : null,
        });
        if (well && well.state === "done" && typeof well.objects === "number") {
          const rgb = wellColour(range, well.objects);
          cell.style.backgroundColor = `rgb(${rgb.join(",")})`;
          cell.style.color = luminance(rgb) > 0.5 ? "#111" : "#fff";
          if (size === "large") cell.textContent = String(well.objects);
        } else if (well && well.state === "failed") {
          cell.textContent = "×";
        } else if (well && well.state === "done" && size === "large") {
          cell.textContent = "✓";
        }
        tr.append(cell);
      }
      body.append(tr);
    }
    const total = plate.wells.size;
    const summary = `${counts.done + counts.skipped} of ${total} wells done` +
      (counts.running ? `, ${counts.running} running` : "") +
      (counts.failed ? `, ${counts.failed} failed` : "");
    figures.push(
      el(
        "figure",
        { class: "plate", "data-plate": name },
        el("figcaption", {}, el("strong", { text: name }), el("span", { class: "muted small", text: ` ${summary}` })),
        el("div", { class: "plate-scroll" }, el("table", { class: `plate-map plate-${size}` }, el("thead", {}, head), body)),
      ),
    );
  }
  container.replaceChildren(...figures);
  $("plates-empty").hidden = sel.plates.size > 0;
  renderLegend(range);
}

function renderLegend(range) {
  const legend = $("plate-legend");
  const swatch = (cls, text) => el("span", { class: "legend-item" }, el("span", { class: `swatch well ${cls}` }), text);
  const items = [
    swatch("well-pending", "pending"),
    swatch("well-running", "running"),
    swatch("well-failed", "failed"),
    swatch("well-skipped", "skipped (done before)"),
    swatch("well-none", "not in this screen"),
  ];
  const gradient = `linear-gradient(to right, ${VIRIDIS.join(", ")})`;
  const scale = el(
    "span",
    { class: "legend-item legend-scale" },
    el("span", { text: "done, objects:" }),
    el("span", { class: "scale-end", text: range ? range[0] : "–" }),
    el("span", { class: "scale-bar", style: `background: ${gradient}`, "aria-hidden": "true" }),
    el("span", { class: "scale-end", text: range ? range[1] : "–" }),
  );
  legend.replaceChildren(scale, ...items);
}

function renderProgress(sel) {
  if (state.selected !== sel) return;
  const counts = { pending: 0, running: 0, done: 0, failed: 0, skipped: 0 };
  let total = 0;
  for (const plate of sel.plates.values()) {
    for (const well of plate.wells.values()) {
      counts[well.state] = (counts[well.state] || 0) + 1;
      total += 1;
    }
  }
  const parts = [];
  if (sel.progress) parts.push(`jobs ${sel.progress.done} / ${sel.progress.total}`);
  if (total) {
    let wells = `wells ${counts.done + counts.skipped} / ${total} done`;
    if (counts.running) wells += `, ${counts.running} running`;
    wells += `, ${counts.failed} failed`;
    parts.push(wells);
  }
  if (sel.run && sel.run.state === "queued" && sel.run.queue_position !== null && sel.run.queue_position !== undefined) {
    parts.push(`queue position ${sel.run.queue_position}`);
  }
  const line = $("run-progress");
  const bar = sel.progress && sel.progress.total > 0
    ? el("progress", { max: sel.progress.total, value: sel.progress.done, "aria-label": "jobs done" })
    : null;
  line.replaceChildren(...(bar ? [bar, " "] : []), parts.join(" · ") || "waiting for the first events");
}

// -- submitting -----------------------------------------------------------------------------------------
async function loadPipelines() {
  const select = $("pipeline-name");
  let names = [];
  try {
    const data = await api("/api/pipelines");
    names = Array.isArray(data.pipelines) ? data.pipelines : [];
  } catch (error) {
    reportError(error, "Could not list the server's pipelines");
  }
  if (names.length) {
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    if (names.includes(DEFAULT_PIPELINE)) select.value = DEFAULT_PIPELINE; // the standard one, not the first
    select.disabled = false;
  } else {
    select.replaceChildren(el("option", { value: "", text: "(the server has no pipeline library)" }));
    select.disabled = true;
    $("src-text").checked = true;
    pipelineSourceChanged();
  }
}

function pipelineSourceChanged() {
  const fromText = $("src-text").checked;
  $("text-choice").hidden = !fromText;
  $("library-choice").hidden = fromText;
}

function hideSubmitError() {
  $("submit-error").hidden = true;
}

function showSubmitError(error, config, pipeline) {
  const titles = {
    invalid_submission: "The server refused the submission",
    too_large: "The submission is too large for the server",
    refused: "The server refused the submission",
  };
  $("submit-error-title").textContent = titles[error.code] || `Submitting failed (${error.code || "error"})`;
  $("submit-error-text").textContent = error.message; // verbatim: it names the file lines and config keys
  // show the lines the message names, from the texts as they were sent
  const lines = [];
  const seen = new Set();
  const add = (what, text, number) => {
    const key = `${what}:${number}`;
    if (text === null || seen.has(key)) return;
    const all = text.split("\n");
    if (number < 1 || number > all.length) return;
    seen.add(key);
    lines.push(`${what} line ${number}: ${all[number - 1]}`);
  };
  for (const match of error.message.matchAll(/pipeline\.py:(\d+)/g)) add("pipeline", pipeline, Number(match[1]));
  for (const sentence of error.message.split("\n")) {
    if (!/config|screen\.yaml|yaml/i.test(sentence)) continue;
    for (const match of sentence.matchAll(/\bline (\d+)/g)) add("config", config, Number(match[1]));
  }
  $("submit-error-context").textContent = lines.join("\n");
  $("submit-error-lines").hidden = lines.length === 0;
  $("submit-error").hidden = false;
  $("submit-error").scrollIntoView({ block: "nearest" });
}

async function submitScreen(event) {
  event.preventDefault();
  const config = $("config-text").value;
  const fromText = $("src-text").checked;
  const pipeline = fromText ? $("pipeline-text").value : null;
  const status = $("submit-status");
  hideSubmitError();
  if (!config.trim()) {
    showSubmitError(new ApiError(0, "empty", "Write or load a screen config first."), config, pipeline);
    return;
  }
  if (fromText && !pipeline.trim()) {
    showSubmitError(new ApiError(0, "empty", "Paste a pipeline's text, or choose one from the library."), config, pipeline);
    return;
  }
  const body = { config };
  if (fromText) body.pipeline = pipeline;
  else body.pipeline_name = $("pipeline-name").value;
  const button = $("submit-button");
  button.disabled = true;
  status.textContent = "Submitting…";
  try {
    const run = await api("/api/runs", { method: "POST", body });
    status.textContent = `Submitted: run ${run.run_id}`;
    state.runs = [run, ...state.runs.filter((r) => r.run_id !== run.run_id)];
    selectRun(run.run_id, run);
    refreshRuns().catch((error) => reportError(error, "Could not refresh the runs"));
  } catch (error) {
    status.textContent = "";
    if (error instanceof Unauthorized) return;
    showSubmitError(error instanceof ApiError ? error : new ApiError(0, "network", error.message), config, pipeline);
  } finally {
    button.disabled = false;
  }
}

async function loadConfigFile() {
  const input = $("config-file");
  const file = input.files && input.files[0];
  if (!file) return;
  try {
    $("config-text").value = await file.text();
    $("submit-status").textContent = `Loaded ${file.name}`;
  } catch (error) {
    showNotice(`Could not read ${file.name}: ${error.message}`);
  }
}

// -- start ----------------------------------------------------------------------------------------------
async function start() {
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (!state.token) {
    askForToken(false);
    return;
  }
  let who;
  try {
    who = await api("/api/whoami");
  } catch (error) {
    if (!(error instanceof Unauthorized)) showNotice(`The server did not answer: ${error.message}`);
    return;
  }
  state.user = who.user;
  state.operator = Boolean(who.operator);
  $("who-user").textContent = who.user;
  $("who-operator").hidden = !state.operator;
  $("all-runs-label").hidden = !state.operator;
  $("who").hidden = false;
  $("token-panel").hidden = true;
  $("app").hidden = false;
  await loadPipelines();
  if (state.pollTimer !== null) clearTimeout(state.pollTimer);
  state.pollTimer = null;
  pollLoop();
}

function wire() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => askForToken(false));
  $("all-runs").addEventListener("change", () => {
    state.runsKey = "";
    refreshRuns().catch((error) => reportError(error, "Could not refresh the runs"));
  });
  $("btn-cancel").addEventListener("click", () => runAction("drain"));
  $("btn-abort").addEventListener("click", () => {
    if (window.confirm("Abort this run now? Running wells stop; finished wells stay valid.")) runAction("abort");
  });
  $("btn-resume").addEventListener("click", () => runAction("resume"));
  $("submit-form").addEventListener("submit", submitScreen);
  $("config-file").addEventListener("change", loadConfigFile);
  $("src-library").addEventListener("change", pipelineSourceChanged);
  $("src-text").addEventListener("change", pipelineSourceChanged);
}

takeTokenFromUrl();
wire();
start();
