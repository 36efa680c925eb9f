// The OpenHCS panel of an OMERO plate: runs of this plate on the execution server, a live well map of the
// selected run, cancel/abort, and a form to run a pipeline on the plate. Plain script, no build step, nothing
// loaded from elsewhere; window.OpenHCSPanel.mount(root) starts it on a [data-openhcs-panel] element.
//
// Who talks to whom: OMERO.web gives this page a short-lived token for this plate (GET data-token-url, on
// OMERO.web's own origin, with its session cookie); with it, every other request goes from this page to the
// execution server (data-server-url) directly, as "Authorization: Bearer <token>". Nothing long-lived goes
// through OMERO.web. The token lives in memory only, never in an address, and is fetched again before it
// expires (and once more when the server answers 401).
//
// Everything the server sends is untrusted text (run ids, states, messages): it reaches the page through
// textContent and attributes only, never innerHTML. The run's events are read with fetch + ReadableStream,
// because EventSource cannot send the Authorization header.

(function () {
  "use strict";

  const POLL_MS = 3000;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
  const CAN_CANCEL = new Set(["queued", "running"]);
  const CAN_ABORT = new Set(["queued", "running", "draining"]);
  const ACTIVE = new Set(["running", "draining", "aborting"]);
  const WELL_STATES = ["pending", "running", "done", "failed", "skipped"];

  let current = null; // the mounted panel (the webclient shows one plate at a time)

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // An element whose text is set through textContent; attributes through setAttribute.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
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

  function formatTime(seconds) {
    if (seconds === null || seconds === undefined) return "";
    const date = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    if (date.toDateString() === new Date().toDateString()) return clock;
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
  }

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

  function isLoopback(url) {
    try {
      const host = new URL(url).hostname;
      return host === "localhost" || host === "127.0.0.1" || host === "[::1]";
    } catch {
      return false;
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

  class Panel {
    constructor(root) {
      this.root = root;
      this.plateId = Number(root.dataset.plateId);
      this.plateKey = root.dataset.plateKey;
      this.serverUrl = String(root.dataset.serverUrl || "").replace(/\/+$/, "");
      this.tokenUrl = root.dataset.tokenUrl;
      this.token = null;
      this.tokenExpires = 0; // unix seconds
      this.tokenTtl = 600;
      this.tokenPromise = null;
      this.refreshTimer = null;
      this.pollTimer = null;
      this.stopped = false;
      this.pipelinesLoaded = false;
      this.runs = [];
      this.runsKey = "";
      this.selected = null;
    }

    q(role) {
      return this.root.querySelector(`[data-role="${role}"]`);
    }

    // false once the panel left the page (the webclient empties the tab on every selection change)
    alive() {
      if (!this.stopped && !this.root.isConnected) this.stop();
      return !this.stopped;
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.pollTimer);
      clearTimeout(this.refreshTimer);
      if (this.selected) this.stopStream(this.selected);
      this.selected = null;
      if (current === this) current = null;
    }

    notice(text) {
      this.q("notice-text").textContent = text;
      this.q("notice").hidden = false;
    }

    // -- the token --------------------------------------------------------------------------------------
    margin() {
      // ask for a new token this long before the current one expires
      return Math.max(5, Math.min(60, this.tokenTtl * 0.2));
    }

    async fetchToken() {
      let response;
      try {
        response = await fetch(this.tokenUrl, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" },
        });
      } catch (error) {
        throw new ApiError(0, "omero_unreachable", `OMERO.web did not answer (${error.message})`);
      }
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (!response.ok || !data || typeof data.token !== "string") {
        let message = (data && data.error) || `OMERO.web refused a token (HTTP ${response.status})`;
        if (response.status === 403 && !(data && data.error)) message = "You are no longer logged in to OMERO.web: reload the page.";
        throw new ApiError(response.status, (data && data.code) || `http_${response.status}`, message);
      }
      this.token = data.token;
      this.tokenExpires = Number(data.expires) || 0;
      this.tokenTtl = Number(data.ttl_s) || this.tokenTtl;
      this.scheduleTokenRefresh();
      return this.token;
    }

    scheduleTokenRefresh() {
      clearTimeout(this.refreshTimer);
      if (this.stopped) return;
      const due = (this.tokenExpires - this.margin()) * 1000 - Date.now();
      this.refreshTimer = setTimeout(() => {
        if (!this.alive()) return;
        this.getToken(true).catch((error) => this.notice(`Could not renew the token: ${error.message}`));
      }, Math.max(1000, due));
    }

    async getToken(force = false) {
      const fresh = this.token && this.tokenExpires - Date.now() / 1000 > this.margin();
      if (fresh && !force) return this.token;
      if (!this.tokenPromise) {
        this.tokenPromise = this.fetchToken().finally(() => {
          this.tokenPromise = null;
        });
      }
      return this.tokenPromise;
    }

    // -- the execution server -----------------------------------------------------------------------------
    async api(path, { method = "GET", body, raw = false, signal, retried = false } = {}) {
      const token = await this.getToken();
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(this.serverUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
          credentials: "omit",
          mode: "cors",
          signal,
        });
      } catch (error) {
        if (error && error.name === "AbortError") throw error;
        throw new ApiError(
          0,
          "unreachable",
          `The execution server at ${this.serverUrl} did not answer. Is it running, and does it accept this ` +
            `page's origin (openhcs-rules serve --http-cors-origin ${window.location.origin})?`,
        );
      }
      if (response.status === 401 && !retried) {
        // an expired token (a laptop that slept): one new token, one more try; a 401 is never acted on
        this.token = null;
        return this.api(path, { method, body, raw, signal, retried: true });
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
      return raw ? response : response.json();
    }

    // -- start --------------------------------------------------------------------------------------------
    start() {
      this.q("notice-dismiss").addEventListener("click", () => (this.q("notice").hidden = true));
      this.q("submit-form").addEventListener("submit", (event) => this.submit(event));
      this.q("src-library").addEventListener("change", () => this.sourceChanged());
      this.q("src-text").addEventListener("change", () => this.sourceChanged());
      if (window.location.protocol === "https:" && this.serverUrl.startsWith("http:") && !isLoopback(this.serverUrl)) {
        this.notice(
          `This page is https and the execution server's address (${this.serverUrl}) is http: the browser ` +
            "blocks such requests. The server needs TLS (serve --http-cert/--http-key) and an https address.",
        );
      }
      this.poll(true);
    }

    async poll(first = false) {
      if (!this.alive()) return;
      try {
        if (first || !this.user) await this.whoami();
        if (!this.pipelinesLoaded) await this.loadPipelines();
        await this.refreshRuns();
        if (this.selected && this.selected.run && !this.selected.stream && !TERMINAL.has(this.selected.run.state)) {
          this.startStream(this.selected); // resumed, or its stream gave up while the server was away
        }
      } catch (error) {
        if (this.alive()) this.notice(error.message);
      } finally {
        if (this.alive()) this.pollTimer = setTimeout(() => this.poll(), POLL_MS);
      }
    }

    async whoami() {
      const who = await this.api("/api/whoami");
      this.user = who.user;
      this.q("who").textContent = `as ${who.user}`;
      this.q("notice").hidden = true;
    }

    async loadPipelines() {
      const data = await this.api("/api/pipelines");
      const names = Array.isArray(data.pipelines) ? data.pipelines : [];
      const select = this.q("pipeline-name");
      if (names.length) {
        select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
        if (names.includes("nuclei_count")) select.value = "nuclei_count"; // the standard one, not the first
        select.disabled = false;
      } else {
        select.replaceChildren(el("option", { value: "", text: "(the server has no pipeline library)" }));
        select.disabled = true;
        this.q("src-text").checked = true;
        this.sourceChanged();
      }
      this.pipelinesLoaded = true;
    }

    sourceChanged() {
      const fromText = this.q("src-text").checked;
      this.q("text-choice").hidden = !fromText;
      this.q("library-choice").hidden = fromText;
    }

    // -- runs of this plate -------------------------------------------------------------------------------
    async refreshRuns() {
      const data = await this.api("/api/runs");
      const runs = (Array.isArray(data.runs) ? data.runs : []).filter(
        (run) => Array.isArray(run.plates) && run.plates.includes(this.plateKey),
      );
      runs.sort((a, b) => (b.created_at || 0) - (a.created_at || 0) || String(b.run_id).localeCompare(String(a.run_id)));
      const sel = this.selected;
      if (sel && sel.run) {
        // an answer older than the newest event the stream brought keeps that event's state
        const index = runs.findIndex((run) => run.run_id === sel.runId);
        if (index >= 0 && (runs[index].last_seq ?? 0) < (sel.run.last_seq ?? 0)) {
          runs[index] = { ...runs[index], state: sel.run.state, exit_code: sel.run.exit_code };
        }
      }
      this.runs = runs;
      this.renderRuns();
      this.q("runs-updated").textContent = `updated ${formatTime(Date.now() / 1000)}`;
      if (sel) {
        const fresh = runs.find((run) => run.run_id === sel.runId);
        if (fresh) this.updateSelected(sel, fresh);
      }
    }

    renderRuns() {
      const key = JSON.stringify(this.runs.map((r) => [r.run_id, r.state, r.started_at, r.queue_position])) +
        `|${this.selected ? this.selected.runId : ""}`;
      if (key === this.runsKey) return;
      this.runsKey = key;
      const rows = this.runs.map((run) => {
        const selected = this.selected && this.selected.runId === run.run_id;
        const actions = el("td", { class: "openhcs-actions" });
        if (CAN_CANCEL.has(run.state)) {
          actions.append(
            el("button", {
              type: "button",
              class: "openhcs-quiet",
              text: "Cancel",
              title: "Running wells finish, no new well starts",
              onclick: (event) => {
                event.stopPropagation();
                this.cancel(run.run_id, "drain", event.currentTarget);
              },
            }),
          );
        }
        if (CAN_ABORT.has(run.state)) {
          actions.append(
            el("button", {
              type: "button",
              class: "openhcs-quiet",
              text: "Abort",
              title: "Stop now (finished wells stay valid)",
              onclick: (event) => {
                event.stopPropagation();
                if (window.confirm("Abort this run now? Running wells stop; finished wells stay valid.")) {
                  this.cancel(run.run_id, "abort", event.currentTarget);
                }
              },
            }),
          );
        }
        let stateText = run.state;
        if (run.state === "queued" && run.queue_position) stateText += ` (#${run.queue_position})`;
        return el(
          "tr",
          {
            tabindex: "0",
            class: selected ? "openhcs-selected" : "",
            "aria-selected": selected ? "true" : "false",
            "data-run-id": run.run_id,
            "data-state": run.state,
            title: `Show run ${run.run_id}`,
            onclick: () => this.select(run.run_id),
            onkeydown: (event) => {
              if (event.key === "Enter" || event.key === " ") {
                event.preventDefault();
                this.select(run.run_id);
              }
            },
          },
          el("td", { class: "openhcs-mono", text: run.run_id }),
          el("td", {}, el("span", { class: `openhcs-badge openhcs-state-${run.state}`, text: stateText })),
          el("td", { text: formatTime(run.started_at || run.created_at) }),
          actions,
        );
      });
      this.q("runs").replaceChildren(...rows);
      this.q("runs-empty").hidden = this.runs.length > 0;
    }

    async cancel(runId, mode, button) {
      if (button) button.disabled = true;
      try {
        const run = await this.api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST", body: { mode } });
        if (this.selected && this.selected.runId === runId) this.updateSelected(this.selected, run);
        await this.refreshRuns();
      } catch (error) {
        this.notice(`Could not ${mode === "abort" ? "abort" : "cancel"} run ${runId}: ${error.message}`);
        if (button) button.disabled = false;
      }
    }

    // -- the selected run ---------------------------------------------------------------------------------
    select(runId, run = null) {
      if (this.selected && this.selected.runId === runId) return;
      if (this.selected) this.stopStream(this.selected);
      const sel = {
        runId,
        run: null,
        plate: { rows: [], columns: [], wells: new Map() },
        lastSeq: 0,
        progress: null,
        stream: null,
        loaded: false,
      };
      this.selected = sel;
      this.q("detail").hidden = false;
      this.q("run-id").textContent = runId;
      this.q("plate-map").replaceChildren();
      this.runsKey = "";
      this.renderRuns();
      const known = run || this.runs.find((r) => r.run_id === runId);
      if (known) this.updateSelected(sel, known);
      this.load(sel).catch((error) => this.notice(`Could not load run ${runId}: ${error.message}`));
    }

    async load(sel) {
      if (!sel.run) this.updateSelected(sel, await this.api(`/api/runs/${encodeURIComponent(sel.runId)}`));
      if (this.selected !== sel) return;
      await this.refreshPlate(sel);
      if (this.selected !== sel) return;
      sel.loaded = true;
      if (!TERMINAL.has(sel.run.state)) this.startStream(sel);
    }

    updateSelected(sel, run) {
      if (sel.run && (run.last_seq ?? 0) < (sel.run.last_seq ?? 0)) {
        run = { ...run, state: sel.run.state, exit_code: sel.run.exit_code, last_seq: sel.run.last_seq }; // older news
      }
      sel.run = run;
      if (this.selected !== sel) return;
      const badge = this.q("run-state");
      badge.className = `openhcs-badge openhcs-state-${run.state}`;
      badge.textContent = run.state;
      const message = this.q("run-message");
      message.textContent = run.message || "";
      message.hidden = !run.message;
      this.renderProgress(sel);
    }

    async refreshPlate(sel) {
      const seenBefore = sel.lastSeq;
      const data = await this.api(`/api/runs/${encodeURIComponent(sel.runId)}/plates`);
      if (this.selected !== sel) return;
      const info = (data.plates || {})[this.plateKey];
      if (info) {
        sel.plate.rows = Array.isArray(info.rows) ? info.rows.map(String) : [];
        sel.plate.columns = Array.isArray(info.columns) ? info.columns.map(Number) : [];
        for (const [well, entry] of Object.entries(info.wells || {})) {
          const known = sel.plate.wells.get(wellKey(well));
          if (known && known.seq > seenBefore) continue; // an event newer than this answer
          const state = WELL_STATES.includes(entry.state) ? entry.state : "pending";
          const objects = typeof entry.objects === "number" ? entry.objects : null;
          this.setWell(sel, well, { state, objects });
        }
      }
      this.renderPlate(sel);
    }

    setWell(sel, well, changes, seq = 0) {
      const key = wellKey(well);
      const known = sel.plate.wells.get(key) || { name: String(well), state: "pending", objects: null, seq: 0 };
      sel.plate.wells.set(key, { ...known, ...changes, seq: Math.max(known.seq || 0, seq) });
    }

    applyEvent(sel, event) {
      if (typeof event.seq !== "number" || event.seq <= sel.lastSeq) return; // a replay we have
      sel.lastSeq = event.seq;
      const body = event.body || {};
      const ours = body.plate === undefined || body.plate === this.plateKey;
      switch (event.type) {
        case "progress":
          if (typeof body.done === "number" && typeof body.total === "number") sel.progress = body;
          break;
        case "run_state":
          if (!ACTIVE.has(body.state)) this.nothingRuns(sel);
          if (sel.run && body.state && event.seq > (sel.run.last_seq || 0)) {
            const exitCode = body.exit_code ?? sel.run.exit_code;
            this.updateSelected(sel, { ...sel.run, state: body.state, exit_code: exitCode, last_seq: event.seq });
          }
          break;
        case "run_started":
          this.nothingRuns(sel);
          break;
        case "well_started":
          if (ours && body.well) this.setWell(sel, body.well, { state: "running", objects: null, error: null }, event.seq);
          break;
        case "well_finished":
          if (ours && body.well) {
            const objects = Number.isInteger(body.objects) && body.objects >= 0 ? body.objects : null;
            this.setWell(sel, body.well, { state: "done", objects, error: null }, event.seq);
          }
          break;
        case "well_failed":
          if (ours && body.well) this.setWell(sel, body.well, { state: "failed", objects: null, error: body.error }, event.seq);
          break;
        case "well_skipped":
          if (ours && body.well) {
            const known = sel.plate.wells.get(wellKey(body.well));
            if (!known || known.state !== "done") this.setWell(sel, body.well, { state: "skipped", objects: null }, event.seq);
          }
          break;
        default:
          break;
      }
      this.scheduleRender(sel);
    }

    nothingRuns(sel) {
      for (const [key, well] of sel.plate.wells) {
        if (well.state === "running") sel.plate.wells.set(key, { ...well, state: "pending", seq: sel.lastSeq });
      }
    }

    scheduleRender(sel) {
      if (sel.renderQueued) return;
      sel.renderQueued = true;
      requestAnimationFrame(() => {
        sel.renderQueued = false;
        if (this.selected !== sel) return;
        this.renderPlate(sel);
      });
    }

    renderPlate(sel) {
      let rows = sel.plate.rows;
      let columns = sel.plate.columns;
      if (!rows.length || !columns.length) {
        // before discovery listed the plate: as far as the wells the events named
        let maxRow = 0;
        let maxCol = 0;
        for (const key of sel.plate.wells.keys()) {
          const match = /^([A-Z]+)(\d+)$/.exec(key);
          if (!match) continue;
          maxRow = Math.max(maxRow, rowIndex(match[1]));
          maxCol = Math.max(maxCol, Number(match[2]));
        }
        rows = Array.from({ length: maxRow }, (_, i) => rowName(i + 1));
        columns = Array.from({ length: maxCol }, (_, i) => i + 1);
      }
      const grid = el("div", { class: "openhcs-grid", role: "img" });
      grid.style.gridTemplateColumns = `repeat(${columns.length}, 1fr)`;
      grid.style.maxWidth = `${columns.length * 28}px`; // a 12-well plate's wells as big as a 96-well's
      for (const row of rows) {
        for (const column of columns) {
          const name = `${row}${String(column).padStart(2, "0")}`;
          const well = sel.plate.wells.get(wellKey(name));
          let label = well ? `${well.name}: ${well.state}` : `${name}: not in this run`;
          if (well && typeof well.objects === "number") label += `, ${well.objects} objects`;
          if (well && well.error) label += ` — ${well.error}`;
          grid.append(
            el("span", {
              class: `openhcs-well ${well ? `openhcs-well-${well.state}` : "openhcs-well-none"}`,
              title: label,
              "data-well": well ? well.name : name,
              "data-state": well ? well.state : "none",
            }),
          );
        }
      }
      grid.setAttribute("aria-label", `${rows.length} × ${columns.length} wells`);
      this.q("plate-map").replaceChildren(grid);
      this.renderProgress(sel);
    }

    renderProgress(sel) {
      if (this.selected !== sel) return;
      const counts = { pending: 0, running: 0, done: 0, failed: 0, skipped: 0 };
      for (const well of sel.plate.wells.values()) counts[well.state] = (counts[well.state] || 0) + 1;
      const total = sel.plate.wells.size;
      const parts = [];
      if (total) {
        let wells = `${counts.done + counts.skipped} of ${total} wells done`;
        if (counts.running) wells += `, ${counts.running} running`;
        if (counts.failed) wells += `, ${counts.failed} failed`;
        parts.push(wells);
      }
      if (sel.progress) parts.push(`jobs ${sel.progress.done} / ${sel.progress.total}`);
      if (sel.run && sel.run.state === "queued" && sel.run.queue_position) parts.push(`queue position ${sel.run.queue_position}`);
      const line = this.q("run-progress");
      const bar = total ? el("progress", { max: total, value: counts.done + counts.skipped, "aria-label": "wells done" }) : null;
      const ended = sel.run && TERMINAL.has(sel.run.state);
      line.replaceChildren(...(bar ? [bar, " "] : []), parts.join(" · ") || (ended ? "no well ran" : "waiting for the first events"));
    }

    // -- the event stream (fetch + ReadableStream: it needs the Authorization header) ---------------------
    stopStream(sel) {
      if (sel.stream) sel.stream.abort();
      sel.stream = null;
    }

    startStream(sel) {
      if (sel.stream || this.selected !== sel || !sel.loaded) return;
      const controller = new AbortController();
      sel.stream = controller;
      this.followStream(sel, controller)
        .catch((error) => {
          if (this.alive()) this.notice(`The run's event stream stopped: ${error.message}`);
        })
        .finally(() => {
          if (sel.stream === controller) sel.stream = null;
        });
    }

    async followStream(sel, controller) {
      let backoff = 500;
      while (!controller.signal.aborted && this.selected === sel && this.alive()) {
        try {
          // a new token for every connection: the server ends a stream whose token expired
          const response = await this.api(`/api/runs/${encodeURIComponent(sel.runId)}/stream?after=${sel.lastSeq}`, {
            raw: true,
            signal: controller.signal,
          });
          await this.readEvents(sel, response.body, controller.signal);
          backoff = 500;
        } catch (error) {
          if (controller.signal.aborted) return;
          if (error instanceof ApiError && (error.status === 404 || error.status === 403)) return;
        }
        if (controller.signal.aborted) return;
        try {
          const run = await this.api(`/api/runs/${encodeURIComponent(sel.runId)}`, { signal: controller.signal });
          this.updateSelected(sel, run);
          await this.refreshPlate(sel);
          if (TERMINAL.has(run.state) && (run.last_seq ?? 0) <= sel.lastSeq) return; // the poll restarts it on resume
        } catch (error) {
          if (controller.signal.aborted) return;
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10000);
      }
    }

    async readEvents(sel, body, signal) {
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
            const event = parseFrame(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (event) this.applyEvent(sel, event);
          }
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    }

    // -- submitting ---------------------------------------------------------------------------------------
    hideSubmitError() {
      this.q("submit-error").hidden = true;
    }

    showSubmitError(error, config, pipeline) {
      const titles = {
        invalid_submission: "The server refused the submission",
        forbidden: "The server does not let this token submit that",
        too_large: "The submission is too large for the server",
        refused: "The server refused the submission",
        empty: "Nothing to submit yet",
      };
      this.q("submit-error-title").textContent = titles[error.code] || `Submitting failed (${error.code || "error"})`;
      this.q("submit-error-text").textContent = error.message; // verbatim: it names files, lines and config keys
      // the lines the message names, from the texts as they were sent
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
      this.q("submit-error-context").textContent = lines.join("\n");
      this.q("submit-error-lines").hidden = lines.length === 0;
      this.q("submit-error").hidden = false;
    }

    async submit(event) {
      event.preventDefault();
      const config = this.q("config-text").value;
      const fromText = this.q("src-text").checked;
      const pipeline = fromText ? this.q("pipeline-text").value : null;
      const name = this.q("pipeline-name").value;
      const status = this.q("submit-status");
      this.hideSubmitError();
      if (!config.trim()) {
        this.showSubmitError(new ApiError(0, "empty", "The screen config is empty."), config, pipeline);
        return;
      }
      if (fromText ? !pipeline.trim() : !name) {
        this.showSubmitError(new ApiError(0, "empty", "Paste a pipeline's text, or choose one from the library."), config, pipeline);
        return;
      }
      const body = { config };
      if (fromText) body.pipeline = pipeline;
      else body.pipeline_name = name;
      const button = this.q("submit-button");
      button.disabled = true;
      status.textContent = "Submitting…";
      try {
        const run = await this.api("/api/runs", { method: "POST", body });
        status.textContent = `Submitted: run ${run.run_id}`;
        this.runs = [run, ...this.runs.filter((r) => r.run_id !== run.run_id)];
        this.select(run.run_id, run);
        this.refreshRuns().catch((error) => this.notice(error.message));
      } catch (error) {
        status.textContent = "";
        this.showSubmitError(error instanceof ApiError ? error : new ApiError(0, "network", error.message), config, pipeline);
      } finally {
        button.disabled = false;
      }
    }
  }

  function mount(root) {
    if (!root || root.dataset.openhcsMounted) return current;
    root.dataset.openhcsMounted = "1";
    if (current) current.stop();
    current = null;
    if (!root.dataset.serverUrl || !root.dataset.tokenUrl) return null; // not configured: the panel says why
    current = new Panel(root);
    current.start();
    return current;
  }

  window.OpenHCSPanel = { mount };

  function autostart() {
    for (const root of document.querySelectorAll("[data-openhcs-panel][data-autostart]")) mount(root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autostart);
  else autostart();
})();
