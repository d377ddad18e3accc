// vitalflow patient view: plain JavaScript and SVG, no dependencies (served by the API, offline).
// List: GET /patients (the token's scope) with each patient's latest vitals and severity.
// Patient (#patient=<id>): the last 24 h from GET /patients/{id}/observations, hourly
// min-max bands from .../observations/summary, thresholds drawn; both refreshed live when the
// stream (EventSource /events, step 5) says a reading of theirs was stored.
"use strict";

(() => {
  const DAY_MS = 24 * 3600 * 1000;
  const RELOAD_DELAY_MS = 400;
  // The default bands of flows/thresholds.py (ACC/AHA 2017, NEWS2, ADA) that alert or warn.
  const CHARTS = [
    { kind: "blood_pressure", title: "Blood pressure (mmHg)", values: ["systolic", "diastolic"],
      thresholds: [[180, "crisis"], [140, "stage 2"], [90, "hypotension"]] },
    { kind: "heart_rate", title: "Heart rate (/min)", values: ["heart_rate"],
      thresholds: [[130, "severe tachycardia"], [40, "severe bradycardia"]] },
    { kind: "spo2", title: "SpO2 (%)", values: ["spo2"], thresholds: [[95, "low"], [91, "severely low"]] },
    { kind: "body_temperature", title: "Temperature (°C)", values: ["temperature"],
      thresholds: [[38, "fever"], [35, "hypothermia"]] },
    { kind: "blood_glucose", title: "Glucose (mg/dL)", values: ["glucose"],
      thresholds: [[250, "hyperglycaemia 2"], [70, "hypoglycaemia"], [54, "level 2"]] },
    { kind: "body_weight", title: "Weight (kg)", values: ["weight"], thresholds: [] },
  ];
  const VITAL_COLUMNS = [
    ["blood_pressure", (v) => `${v.systolic}/${v.diastolic}`],
    ["heart_rate", (v) => v.heart_rate],
    ["spo2", (v) => `${v.spo2}%`],
    ["body_temperature", (v) => v.temperature],
    ["blood_glucose", (v) => v.glucose],
    ["body_weight", (v) => v.weight],
  ];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const svg = (tag, attrs) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  };

  const state = { token: null, authMode: "jwt", source: null, patient: null, timer: null };

  function setConnection(kind, text) {
    const pill = $("conn-state");
    pill.className = `pill pill-${kind}`;
    pill.dataset.state = kind;
    pill.textContent = text || kind;
  }

  async function api(path) {
    const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (!response.ok) {
      const error = new Error(`${path}: HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function askForToken(message) {
    setConnection("unauthorized", "token needed");
    $("token-form").hidden = false;
    $("token-error").textContent = message || "";
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    state.token = value;
    sessionStorage.setItem("vitalflow.token", value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    route();
  });

  function failed(error) {
    if (error.status === 401) {
      sessionStorage.removeItem("vitalflow.token");
      state.token = null;
      askForToken("The token is missing, invalid or expired.");
    } else if (error.status === 403) {
      setConnection("unauthorized", "not in this token's scope");
    } else {
      setConnection("offline", `unavailable (${error.message})`);
    }
  }

  // ---- list -------------------------------------------------------------------------------

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  async function showList() {
    $("patient-detail").hidden = true;
    $("patient-list").hidden = false;
    let page;
    try {
      page = await api("/patients?limit=1000");
    } catch (error) {
      failed(error);
      return;
    }
    setConnection("live", "live");
    const rows = page.items.map((patient) => {
      const tr = el("tr", `sev-row-${patient.severity}`);
      tr.dataset.patient = patient.id;
      tr.dataset.severity = patient.severity;
      const status = el("td");
      status.append(el("span", `sev sev-${patient.severity}`, patient.severity));
      tr.append(el("td", "pid", patient.id), el("td", "", patient.hospital_id || "–"), status);
      for (const [kind, show] of VITAL_COLUMNS) {
        const vital = patient.last_vitals[kind];
        const td = el("td", vital ? `v-${vital.severity}` : "", vital ? show(vital.values) : "–");
        td.dataset.kind = kind;
        if (vital) td.title = `${vital.severity}, ${when(vital.measured_at)}`;
        tr.append(td);
      }
      tr.append(el("td", "", when(patient.last_seen)));
      tr.addEventListener("click", () => {
        window.location.hash = `patient=${encodeURIComponent(patient.id)}`;
      });
      return tr;
    });
    $("patients").tBodies[0].replaceChildren(...rows);
    $("patients-empty").hidden = rows.length > 0;
    $("list-note").textContent = page.next_after ? "(first 1000)" : `${rows.length}`;
    listen(null);
  }

  // ---- one patient ------------------------------------------------------------------------

  async function showPatient(id) {
    $("patient-list").hidden = true;
    $("patient-detail").hidden = false;
    if ($("detail-title").textContent !== id) {
      $("charts").replaceChildren();
      $("readings").tBodies[0].replaceChildren();
    }
    $("detail-title").textContent = id;
    const to = new Date();
    const from = new Date(to.getTime() - DAY_MS);
    const range = `from=${encodeURIComponent(from.toISOString())}`;
    const base = `/patients/${encodeURIComponent(id)}/observations`;
    let page;
    let summaries;
    try {
      page = await api(`${base}?${range}&limit=1000`);
      summaries = await Promise.all(
        CHARTS.map((c) =>
          api(`${base}/summary?kind=${c.kind}&${range}&bucket=1h`).catch(() => ({ buckets: [] })),
        ),
      );
    } catch (error) {
      failed(error);
      return;
    }
    if (state.patient !== id) return; // the person moved on meanwhile
    setConnection("live", "live");
    const readings = page.items;
    $("charts").replaceChildren(
      ...CHARTS.map((chart, i) => drawChart(chart, readings, summaries[i].buckets, from, to)).filter(Boolean),
    );
    $("readings").tBodies[0].replaceChildren(
      ...readings.slice(0, 300).map((o) => {
        const tr = el("tr");
        tr.dataset.observation = o.id;
        tr.dataset.kind = o.kind;
        const status = el("td");
        status.append(el("span", `sev sev-${o.severity}`, o.severity));
        tr.append(
          el("td", "", when(o.measured_at)),
          el("td", "", o.kind),
          el("td", "", Object.entries(o.values).map(([k, v]) => `${k} ${v}`).join(", ")),
          status,
          el("td", "", o.flags.map((f) => f.message).join("; ")),
          el("td", "", `${o.device_type} ${o.device_id}`),
        );
        return tr;
      }),
    );
    $("detail-note").textContent = `last 24 h · ${readings.length} readings`;
    listen(id);
  }

  function drawChart(chart, readings, buckets, from, to) {
    const points = readings.filter((o) => o.kind === chart.kind);
    if (!points.length) return null;
    const W = 600;
    const H = 160;
    const left = 34;
    const right = 8;
    const top = 8;
    const bottom = 16;
    const numbers = points.flatMap((o) => chart.values.map((v) => o.values[v])).filter(Number.isFinite);
    const marks = chart.thresholds.map(([v]) => v);
    let lo = Math.min(...numbers, ...marks);
    let hi = Math.max(...numbers, ...marks);
    const pad = (hi - lo) * 0.08 || 1;
    lo -= pad;
    hi += pad;
    const x = (t) => left + ((t - from.getTime()) / (to.getTime() - from.getTime())) * (W - left - right);
    const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (H - top - bottom);

    const box = el("div", "chart");
    box.dataset.kind = chart.kind;
    box.dataset.points = String(points.length);
    box.append(el("h3", "", `${chart.title} · latest ${chart.values.map((v) => points[0].values[v]).join("/")}`));
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    plot.setAttribute("aria-label", chart.title);
    // Hourly min-max of the first value, computed by the database (.../summary).
    const bucketWidth = Math.max(1, x(from.getTime() + 3600 * 1000) - x(from.getTime()) - 1);
    for (const bucket of buckets) {
      const stats = bucket.values[chart.values[0]];
      if (!stats) continue;
      const start = Date.parse(bucket.start);
      plot.append(
        svg("rect", {
          class: "bucket",
          x: x(start),
          y: y(stats.max),
          width: bucketWidth,
          height: Math.max(1, y(stats.min) - y(stats.max)),
        }),
      );
    }
    for (const [value, label] of chart.thresholds) {
      plot.append(svg("line", { class: "threshold", x1: left, x2: W - right, y1: y(value), y2: y(value) }));
      const text = svg("text", { class: "threshold-label", x: W - right - 2, y: y(value) - 2, "text-anchor": "end" });
      text.textContent = `${label} ${value}`;
      plot.append(text);
    }
    for (const [value, anchor] of [[hi - pad, top + 8], [lo + pad, H - bottom]]) {
      const text = svg("text", { class: "axis", x: 2, y: anchor });
      text.textContent = Math.round(value);
      plot.append(text);
    }
    for (const [label, at] of [["-24 h", left], ["now", W - right - 20]]) {
      const text = svg("text", { class: "axis", x: at, y: H - 3 });
      text.textContent = label;
      plot.append(text);
    }
    chart.values.forEach((name, series) => {
      const ordered = points
        .filter((o) => Number.isFinite(o.values[name]))
        .map((o) => [x(Date.parse(o.measured_at)), y(o.values[name])])
        .sort((a, b) => a[0] - b[0]);
      plot.append(svg("polyline", { class: `series-${series}`, points: ordered.map((p) => p.join(",")).join(" ") }));
      for (const [px, py] of ordered) {
        plot.append(svg("circle", { class: `point series-${series}`, cx: px, cy: py, r: 3 }));
      }
    });
    box.append(plot);
    return box;
  }

  // ---- live updates -----------------------------------------------------------------------

  function listen(patient) {
    if (state.source) state.source.close();
    const params = new URLSearchParams({ step: "5_medical_stored" });
    if (patient) params.set("patient_id", patient);
    if (state.token) params.set("access_token", state.token);
    const source = new EventSource(`/events?${params}`);
    state.source = source;
    source.addEventListener("5_medical_stored", () => {
      // A burst of readings reloads once.
      clearTimeout(state.timer);
      state.timer = setTimeout(route, RELOAD_DELAY_MS);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setConnection("offline", "live updates stopped");
    };
  }

  function route() {
    const match = /^#patient=(.+)$/.exec(window.location.hash);
    state.patient = match ? decodeURIComponent(match[1]) : null;
    if (state.patient) showPatient(state.patient);
    else showList();
  }

  $("back").addEventListener("click", (event) => {
    event.preventDefault();
    window.location.hash = "";
  });
  window.addEventListener("hashchange", route);

  async function start() {
    try {
      const health = await (await fetch("/health", { cache: "no-store" })).json();
      state.authMode = health.auth;
    } catch (error) {
      state.authMode = "jwt";
    }
    $("auth-off").hidden = state.authMode !== "off";
    state.token = state.authMode === "off" ? null : window.vitalflowInitialToken();
    if (state.authMode !== "off" && !state.token) {
      askForToken();
      return;
    }
    route();
  }

  start();
})();
