// vitalflow dashboard: plain JavaScript, no dependencies (served by the API, works offline).
// Data flow: /health (auth mode) -> /stats (counters) -> /events/recent (timeline + the
// position to resume from) -> EventSource /events from that position, so nothing is missed
// or shown twice. EventSource reconnects by itself with Last-Event-ID; when the server
// refuses a connection (restarting, token expired) we reconnect ourselves from the last id.
"use strict";

(() => {
  const STEPS = [
    "1_mqtt_received",
    "2_payload_parsed",
    "3_patient_lookup",
    "4_patient_updated",
    "5_medical_stored",
  ];
  const STEP_LABELS = {
    "1_mqtt_received": "1 received",
    "2_payload_parsed": "2 parsed",
    "3_patient_lookup": "3 lookup",
    "4_patient_updated": "4 patient",
    "5_medical_stored": "5 stored",
  };
  const STATUSES = ["success", "error", "skipped"];
  const EMERGENCY_CODES = new Set(["sos", "fall", "emergency"]);
  const MAX_ROWS = 250;
  const MAX_ALERTS = 100;
  const STATS_EVERY_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  const state = {
    token: null,
    authMode: "jwt",
    source: null,
    lastId: null,
    backoffMs: 1000,
    rows: new Map(), // delivery key -> {li, steps}
    alertKeys: new Set(),
    alertCount: 0,
    bannerAlert: null,
    bannerMore: 0,
    stats: null,
    bucketSeconds: 10,
    throughput: [], // [{start: ms, events: n}]
    statsTimer: null,
  };

  // ---- token ------------------------------------------------------------------------------

  function askForToken(message) {
    $("token-form").hidden = false;
    $("token-error").textContent = message || "";
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    state.token = value;
    sessionStorage.setItem("vitalflow.token", value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    begin();
  });

  async function api(path) {
    const headers = {};
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(path, { headers, cache: "no-store" });
    if (!response.ok) {
      const error = new Error(`${path}: HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // ---- connection -------------------------------------------------------------------------

  function setConnection(kind, text) {
    const pill = $("conn-state");
    pill.className = `pill pill-${kind}`;
    pill.dataset.state = kind;
    pill.textContent = text || kind;
  }

  function trackId(event) {
    if (event.lastEventId) {
      state.lastId = event.lastEventId;
      $("position").textContent = `@ ${state.lastId}`;
    }
  }

  function connect() {
    if (state.source) state.source.close();
    const params = new URLSearchParams();
    if (state.lastId) params.set("last_event_id", state.lastId);
    if (state.token) params.set("access_token", state.token);
    const source = new EventSource(`/events?${params}`);
    state.source = source;
    setConnection("connecting", "connecting");

    source.addEventListener("ready", (event) => {
      trackId(event);
      state.backoffMs = 1000;
      setConnection("live", "live");
    });
    for (const step of STEPS) {
      source.addEventListener(step, (event) => {
        trackId(event);
        handleEvent(JSON.parse(event.data), true);
      });
    }
    source.addEventListener("heartbeat", trackId);
    source.addEventListener("reset", (event) => {
      trackId(event);
      const info = JSON.parse(event.data);
      setConnection("live", `live (${info.reason.replace("_", " ")}: some events were no longer held)`);
    });
    source.addEventListener("close", (event) => {
      trackId(event);
      const info = JSON.parse(event.data);
      // The browser reconnects by itself with Last-Event-ID and resumes from there.
      setConnection("reconnecting", `reconnecting (${info.reason.replace("_", " ")})`);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (HTTP error): find out why, then try again.
        source.close();
        recover();
      } else {
        setConnection("reconnecting", "reconnecting");
      }
    };
  }

  async function recover() {
    try {
      await api("/events/recent?limit=1");
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        setConnection("unauthorized", "token rejected");
        sessionStorage.removeItem("vitalflow.token");
        state.token = null;
        askForToken(error.status === 401 ? "The token is missing, invalid or expired." : "The token may not see these events.");
        return;
      }
    }
    setConnection("offline", `offline, retrying in ${Math.round(state.backoffMs / 1000)} s`);
    setTimeout(connect, state.backoffMs);
    state.backoffMs = Math.min(state.backoffMs * 2, 30000);
  }

  // ---- events -----------------------------------------------------------------------------

  function deliveryKey(event) {
    // "<message_id>/<step>" or "<message_id>/d<n>/<step>": one timeline row per delivery.
    const id = event.id || "";
    const cut = id.lastIndexOf("/");
    return cut > 0 ? id.slice(0, cut) : (event.data && event.data.message_id) || id;
  }

  function timeOf(event) {
    const when = event.time ? new Date(event.time) : new Date();
    return Number.isNaN(when.getTime()) ? new Date() : when;
  }

  function handleEvent(event, live) {
    const data = event.data || {};
    renderRow(event, data);
    if (live) countLive(event, data);
    const alert = describeAlert(event, data);
    if (alert) raiseAlert(alert);
  }

  function renderRow(event, data) {
    const key = deliveryKey(event);
    let row = state.rows.get(key);
    if (!row) {
      const li = el("li");
      li.dataset.message = data.message_id || key;
      li.append(
        el("span", "t", timeOf(event).toLocaleTimeString()),
        el("span", "dev", `${data.device_type || "?"} ${data.device_id || ""}`),
        el("span", "pat", data.patient_id || "no patient"),
      );
      const steps = el("span", "steps");
      const pills = {};
      for (const step of STEPS) {
        const pill = el("span", "step s-none", STEP_LABELS[step]);
        pill.dataset.step = step;
        pills[step] = pill;
        steps.append(pill);
      }
      const note = el("span", "note");
      steps.append(note);
      li.append(steps);
      row = { li, pills, note, pat: li.children[2] };
      state.rows.set(key, row);
      const list = $("timeline");
      list.prepend(li);
      while (list.children.length > MAX_ROWS) {
        const last = list.lastElementChild;
        for (const [k, r] of state.rows) {
          if (r.li === last) state.rows.delete(k);
        }
        last.remove();
      }
    }
    const pill = row.pills[data.step];
    if (pill) {
      pill.className = `step s-${STATUSES.includes(data.status) ? data.status : "none"}`;
      pill.title = data.status || "";
    }
    if (data.patient_id) row.pat.textContent = data.patient_id;
    if (data.status === "error" && data.error) {
      row.note.textContent = `${data.error.code || "error"}: ${data.error.message || ""}`;
      row.note.className = "note err";
    } else if (data.status === "skipped" && data.reason) {
      row.note.textContent = data.reason;
    }
    if (data.alert) row.li.classList.add("flagged");
  }

  // ---- alerts -----------------------------------------------------------------------------

  function describeAlert(event, data) {
    const processed = data.processed_data || {};
    const observations = Array.isArray(processed.observations) ? processed.observations : [];
    const flags = observations.flatMap((o) => (Array.isArray(o.flags) ? o.flags : []));
    const emergency =
      observations.some((o) => o.kind === "emergency") ||
      flags.some((f) => EMERGENCY_CODES.has(f.code));
    const severe = data.severity === "high" || data.severity === "critical";
    if (!(data.alert === true || severe || emergency)) return null;
    const names = [
      ...new Set(
        flags
          .map((f) => (EMERGENCY_CODES.has(f.code) ? f.code.toUpperCase() : f.message || f.code))
          .filter(Boolean),
      ),
    ];
    const shown = names.slice(0, 2).join(", ") + (names.length > 2 ? ` (+${names.length - 2} more)` : "");
    const critical = emergency || data.severity === "critical";
    // Alert ids (= observation ids) of the alerting readings: what /alerts/{id}/ack takes.
    const ids = observations
      .filter((o) => o.id && (o.severity === "high" || o.severity === "critical"))
      .map((o) => o.id);
    return {
      ids,
      key: deliveryKey(event),
      kind: emergency ? "EMERGENCY" : "ALERT",
      critical,
      // An emergency outranks a critical reading, which outranks a high one.
      rank: emergency ? 3 : critical ? 2 : 1,
      what: shown || `${data.severity || "flagged"} reading`,
      who: `${data.patient_id || "unknown patient"} · ${data.device_type || "?"} ${data.device_id || ""}`,
      when: timeOf(event),
    };
  }

  function raiseAlert(alert) {
    // Steps 4 and 5 of one message may both carry the flag: one alert per delivery.
    if (state.alertKeys.has(alert.key)) return;
    state.alertKeys.add(alert.key);
    state.alertCount += 1;
    $("kpi-alerts").textContent = state.alertCount;

    const item = el("li", alert.critical ? "critical" : "high");
    item.dataset.kind = alert.kind;
    item.dataset.alertIds = alert.ids.join(" ");
    item.append(
      el("span", "what", `${alert.kind}: ${alert.what}`),
      el("span", "when", alert.when.toLocaleTimeString()),
      el("div", "who", alert.who),
    );
    const list = $("alert-list");
    list.prepend(item);
    while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
    $("alert-empty").hidden = true;

    // The banner keeps the most serious unacknowledged alert: a stream of high readings must
    // never push an SOS out of sight. Lesser ones are counted on it and listed below.
    const banner = $("alert-banner");
    const current = state.bannerAlert;
    if (!banner.hidden && current && alert.rank < current.rank) {
      state.bannerMore += 1;
      $("alert-more").textContent = `+${state.bannerMore} more`;
      return;
    }
    if (!banner.hidden && current) state.bannerMore += 1;
    state.bannerAlert = alert;
    banner.className = `alert-banner ${alert.critical ? "alert-critical" : "alert-high"}`;
    banner.dataset.kind = alert.kind;
    $("alert-kind").textContent = alert.kind;
    $("alert-text").textContent = `${alert.what} — ${alert.who} — ${alert.when.toLocaleTimeString()}`;
    $("alert-more").textContent = state.bannerMore ? `+${state.bannerMore} more` : "";
    banner.hidden = false;
    document.title = `(!) ${alert.kind} · vitalflow`;
  }

  function clearBanner() {
    $("alert-banner").hidden = true;
    state.bannerAlert = null;
    state.bannerMore = 0;
    document.title = "vitalflow · live";
  }

  // Acknowledging is stored server-side (alerts.js), so every viewer sees it.
  $("alert-ack").addEventListener("click", () => {
    const ids = state.bannerAlert ? state.bannerAlert.ids : [];
    clearBanner();
    if (window.vitalflowAlerts) window.vitalflowAlerts.acknowledge(ids);
  });

  window.vitalflow = {
    token: () => state.token,
    // Another viewer acknowledged what the banner shows: take it down here too.
    clearBannerIfAcknowledged(acknowledged) {
      const alert = state.bannerAlert;
      if (alert && alert.ids.length && alert.ids.every((id) => acknowledged.has(id))) clearBanner();
    },
  };

  // ---- counters ---------------------------------------------------------------------------

  function countLive(event, data) {
    const stats = state.stats;
    if (!stats) return;
    const type = data.device_type || "unknown";
    const step = data.step || "unknown";
    const status = data.status || "unknown";
    stats.events += 1;
    stats.by_device_type[type] = (stats.by_device_type[type] || 0) + 1;
    stats.by_step[step] = stats.by_step[step] || {};
    stats.by_step[step][status] = (stats.by_step[step][status] || 0) + 1;
    const outcomes = stats.messages;
    if (step === "5_medical_stored" && status === "success") outcomes.stored += 1;
    else if (status === "error") outcomes.failed += 1;
    else if (status === "skipped") outcomes.skipped += 1;
    const bucketMs = state.bucketSeconds * 1000;
    const start = Math.floor(timeOf(event).getTime() / bucketMs) * bucketMs;
    const bucket = state.throughput.find((b) => b.start === start);
    if (bucket) bucket.events += 1;
    renderCounters();
  }

  let renderQueued = false;
  function renderCounters() {
    // Many events can arrive per frame: draw at most once per animation frame.
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      drawCounters();
    });
  }

  function percent(part, whole) {
    return whole ? `${((100 * part) / whole).toFixed(1)}%` : "–";
  }

  function drawCounters() {
    const stats = state.stats;
    if (!stats) return;
    const m = stats.messages;
    const finished = m.stored + m.failed + m.skipped;
    $("kpi-success").textContent = percent(m.stored, finished);
    $("kpi-failure").textContent = percent(m.failed, finished);
    $("kpi-events").textContent = stats.events;
    $("kpi-rate").textContent = stats.rates.events_per_second_1m.toFixed(1);

    const devices = $("device-counts").tBodies[0];
    devices.replaceChildren(
      ...Object.entries(stats.by_device_type)
        .sort((a, b) => b[1] - a[1])
        .map(([type, n]) => {
          const tr = el("tr");
          tr.dataset.deviceType = type;
          tr.append(el("td", "", type), el("td", "", n));
          return tr;
        }),
    );
    const steps = $("step-counts").tBodies[0];
    steps.replaceChildren(
      ...STEPS.map((step) => {
        const counts = stats.by_step[step] || {};
        const tr = el("tr");
        tr.dataset.step = step;
        tr.append(
          el("td", "", STEP_LABELS[step]),
          el("td", "", counts.success || 0),
          el("td", counts.error ? "err" : "", counts.error || 0),
          el("td", counts.skipped ? "skip" : "", counts.skipped || 0),
        );
        return tr;
      }),
    );
    drawThroughput();
  }

  function drawThroughput() {
    const canvas = $("throughput");
    const ctx = canvas.getContext("2d");
    const width = (canvas.width = canvas.clientWidth || canvas.width);
    const height = canvas.height;
    ctx.clearRect(0, 0, width, height);
    const buckets = state.throughput;
    if (!buckets.length) return;
    const max = Math.max(1, ...buckets.map((b) => b.events));
    const bar = width / buckets.length;
    ctx.fillStyle = "#2ea043";
    buckets.forEach((b, i) => {
      const h = ((height - 16) * b.events) / max;
      ctx.fillRect(i * bar + 1, height - h, Math.max(1, bar - 2), h);
    });
    ctx.fillStyle = "#8b9bab";
    ctx.font = "11px sans-serif";
    ctx.fillText(`max ${max} / ${state.bucketSeconds}s`, 4, 11);
  }

  function applyStats(stats) {
    state.stats = stats;
    state.bucketSeconds = stats.bucket_seconds;
    state.throughput = stats.throughput.map((b) => ({ start: Date.parse(b.start), events: b.events }));
    $("throughput-span").textContent = `last ${Math.round((stats.throughput.length * stats.bucket_seconds) / 60)} min, per ${stats.bucket_seconds} s`;
    drawCounters();
  }

  async function refreshStats() {
    try {
      applyStats(await api("/stats"));
    } catch (error) {
      // The stream's own reconnection reports problems; the counters just wait.
    }
  }

  // ---- start ------------------------------------------------------------------------------

  async function begin() {
    try {
      // Counters first, then the recent events: the stream resumes at the recent events'
      // position, so an event is either in the counters' snapshot or counted live.
      applyStats(await api("/stats"));
      const recent = await api("/events/recent?limit=200");
      for (const event of recent.events) handleEvent(event, false);
      state.lastId = recent.position;
      $("position").textContent = `@ ${state.lastId}`;
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        setConnection("unauthorized", "token rejected");
        sessionStorage.removeItem("vitalflow.token");
        state.token = null;
        askForToken("The token is missing, invalid or expired.");
        return;
      }
      // Feed not ready yet: stream from "now"; the stream catches up by itself.
    }
    connect();
    if (!state.statsTimer) state.statsTimer = setInterval(refreshStats, STATS_EVERY_MS);
  }

  async function start() {
    setConnection("connecting", "connecting");
    try {
      const response = await fetch("/health", { cache: "no-store" });
      const health = await response.json();
      state.authMode = health.auth;
    } catch (error) {
      state.authMode = "jwt";
    }
    $("auth-off").hidden = state.authMode !== "off";
    state.token = state.authMode === "off" ? null : window.vitalflowInitialToken();
    if (state.authMode !== "off" && !state.token) {
      setConnection("unauthorized", "token needed");
      askForToken();
      return;
    }
    begin();
  }

  window.addEventListener("resize", drawThroughput);
  start();
})();
