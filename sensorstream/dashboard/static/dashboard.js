// sensorstream's live dashboard: the project's own script, no build step, no dependencies
// but plotly.js (served from the installed plotly package).
//
// Flow: read the views (GET /api/v1/dashboard), open the event stream, catch up from the
// query API, then apply events as they come. Events are queued and applied once per
// animation frame; tiles and tables change their text in place, charts are extended
// (series) or restyled at most once a second (heatmaps, map), never rebuilt per event.
// Everything from data goes into the page as text (textContent), never as HTML; strings
// handed to plotly have < > & escaped, since plotly reads a few tags in its labels.
"use strict";
(() => {
  const TOKEN_KEY = "sensorstream-token";
  const MAX_WINDOWS = 120; // per key and step: what the heatmap and series keep
  const MAX_FEED = 200;
  const CHART_EVERY_MS = 1000; // heatmaps and the map: at most one redraw a second
  const SEVERITY_ORDER = ["notice", "info", "warning", "error", "critical"];
  const OPEN = new Set(["pending", "firing", "flapping"]);
  const COLOURS = { ok: "#2e9d5b", notice: "#2f7fd1", info: "#2f7fd1", warning: "#e3a008",
    error: "#e36b08", critical: "#d23a3a", flapping: "#8e44ad", none: "#9aa5b1" };

  const S = {
    views: null,
    token: sessionStorage.getItem(TOKEN_KEY),
    view: "overview",
    pending: [],
    windows: new Map(), // step -> Map(by value -> Map(window_start -> row))
    latest: new Map(), // step -> Map(by value -> row)
    alerts: new Map(), // alert_id -> latest transition (with acknowledgement)
    feed: [],
    corrections: [],
    dirty: new Set(),
    changed: new Map(), // step -> keys whose latest result changed since the last draw
    chartDrawn: new Map(), // chart id -> when it was last drawn
    chartWaiting: new Set(), // charts with a redraw already scheduled
    gaugeTiles: new Map(), // "step/measure" -> Map(by value -> tile)
    seriesShown: null, // {view, key, since, traces}
    devices: new Map(), // device -> latest row from /devices (map positions)
    metrics: null,
    previousMetrics: null,
    stats: { frames: [], delays: [], work: [], events: 0, drawn: 0 },
    awaitingPaint: [],
  };
  const $ = (id) => document.getElementById(id);

  // --- the API ---------------------------------------------------------------------
  function headers(extra = {}) {
    return S.token ? { ...extra, Authorization: `Bearer ${S.token}` } : extra;
  }
  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (response.status === 401) { showLogin("the token was refused"); throw new Error("401"); }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return response;
  }
  const json = async (path, options) => (await api(path, options)).json();
  function showLogin(why) {
    $("login").hidden = false;
    $("login-error").textContent = why || "";
    setStatus("needs a token", "down");
  }

  // --- small DOM helpers: text only --------------------------------------------------
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function setStatus(text, kind) {
    const node = $("status");
    node.textContent = text;
    node.className = `status ${kind || ""}`;
  }
  const plain = (value) => String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return value.toLocaleString("en");
      return Math.abs(value) >= 100 ? value.toFixed(1) : value.toPrecision(4);
    }
    return String(value);
  }
  const clock = (text) => (text ? String(text).replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "");
  function fillTable(table, rows, columns) {
    const cols = columns || (rows.length ? Object.keys(rows[0]) : []);
    const head = el("thead");
    const tr = el("tr");
    for (const c of cols) tr.append(el("th", "", c));
    head.append(tr);
    const body = el("tbody");
    for (const row of rows) {
      const line = el("tr");
      for (const c of cols) line.append(el("td", "", typeof row[c] === "object" && row[c] !== null ? JSON.stringify(row[c]) : fmt(row[c])));
      body.append(line);
    }
    if (!rows.length) { const line = el("tr"); const td = el("td", "hint", "none"); td.colSpan = Math.max(cols.length, 1); line.append(td); body.append(line); }
    table.replaceChildren(head, body);
  }

  // --- levels and severities --------------------------------------------------------
  function levelOf(value, levels, direction) {
    if (!levels || value === null || value === undefined) return "ok";
    let found = "ok";
    const entries = Object.entries(levels).sort((a, b) => (direction === "below" ? b[1] - a[1] : a[1] - b[1]));
    for (const [name, bound] of entries) {
      if (direction === "below" ? value <= bound : value >= bound) found = name;
    }
    return found;
  }
  const severityRank = (s) => { const i = SEVERITY_ORDER.indexOf(s); return i < 0 ? 2 : i; };
  const colourOf = (level) => COLOURS[level] || COLOURS.warning;

  // --- state from events ---------------------------------------------------------------
  function stepKey(step) {
    const found = S.views.steps.find((s) => s.name === step);
    return found ? found.key : ["device_id"];
  }
  function byValue(row, by) { return row[by] === undefined || row[by] === null ? "(none)" : String(row[by]); }

  function applyResult(row) {
    const step = row.step;
    if (!S.windows.has(step)) { S.windows.set(step, new Map()); S.latest.set(step, new Map()); }
    const keyCols = stepKey(step);
    const key = keyCols.map((c) => byValue(row, c)).join(" / ");
    const perKey = S.windows.get(step);
    if (!perKey.has(key)) perKey.set(key, new Map());
    const windows = perKey.get(key);
    const previous = windows.get(row.window_start);
    if (previous && (previous.revision || 0) > (row.revision || 0)) return; // older news
    if (row._op === "delete") { windows.delete(row.window_start); S.dirty.add(step); return; }
    row._key = key;
    windows.set(row.window_start, row);
    if ((row.revision || 0) > 0 && (!previous || previous.revision !== row.revision)) {
      S.corrections.unshift(row);
      if (S.corrections.length > MAX_FEED) S.corrections.length = MAX_FEED;
      S.dirty.add("corrections");
    }
    if (windows.size > MAX_WINDOWS) {
      const oldest = [...windows.keys()].sort().slice(0, windows.size - MAX_WINDOWS);
      for (const w of oldest) windows.delete(w);
    }
    const latest = S.latest.get(step);
    const shown = latest.get(key);
    if (!shown || shown.window_start <= row.window_start) {
      latest.set(key, row);
      if (!S.changed.has(step)) S.changed.set(step, new Set());
      S.changed.get(step).add(key);
    }
    S.dirty.add(step);
    S.dirty.add(`series:${step}:${key}`);
  }

  function applyAlert(row, live) {
    const known = S.alerts.get(row.alert_id);
    if (known && (known.sequence || 0) > (row.sequence || 0)) return;
    S.alerts.set(row.alert_id, { ...(known || {}), ...row });
    if (live) {
      S.feed.unshift(row);
      if (S.feed.length > MAX_FEED) S.feed.length = MAX_FEED;
    }
    S.dirty.add("alerts");
  }

  function receive(kind, data, at) {
    S.stats.events += 1;
    S.pending.push({ kind, data, at });
  }

  // --- the frame loop: apply what came, draw what changed --------------------------------
  let lastFrame = performance.now();
  function frame(now) {
    const dt = now - lastFrame;
    lastFrame = now;
    if (document.visibilityState === "visible") push(S.stats.frames, dt);
    for (const at of S.awaitingPaint) push(S.stats.delays, now - at);
    S.awaitingPaint = [];
    if (S.pending.length) {
      const began = performance.now();
      const batch = S.pending;
      S.pending = [];
      for (const event of batch) {
        if (event.kind === "result") applyResult(event.data);
        else if (event.kind === "alert") applyAlert(event.data, true);
      }
      draw(false);
      push(S.stats.work, performance.now() - began);
      S.stats.drawn += batch.length;
      for (const event of batch) S.awaitingPaint.push(event.at);
    } else if (S.dirty.size) {
      draw(false);
    }
    requestAnimationFrame(frame);
  }
  function push(list, value) { list.push(value); if (list.length > 20000) list.splice(0, 10000); }

  function draw(all) {
    const dirty = S.dirty;
    const touched = (step) => all || dirty.has(step);
    if (S.view === "gauges") drawGauges(touched, all);
    if (S.view === "heatmap") drawHeatmaps(touched, all);
    if (S.view === "map" && (all || dirty.has("alerts") || [...dirty].some((d) => !d.includes(":")))) drawMap(all);
    if (S.view === "series") drawSeries(dirty, all);
    if (all || dirty.has("corrections")) drawCorrections();
    if (all || dirty.has("alerts")) drawAlerts();
    S.dirty = new Set();
    if (S.view === "gauges" || all) S.changed = new Map();
  }

  // --- gauges ----------------------------------------------------------------------------
  function drawGauges(touched, all) {
    const root = $("gauges");
    if (!root.childElementCount) {
      for (const gauge of S.views.gauges) {
        const id = `${gauge.step}/${gauge.measure}`;
        const group = el("div", "gauge-group");
        group.append(el("h2", "", gauge.title || `${gauge.measure} by ${gauge.by} (${gauge.step})`));
        const legend = el("div", "legend");
        const levels = Object.entries(gauge.levels || {});
        const ok = el("span", "", "ok"); ok.style.setProperty("--swatch", COLOURS.ok); legend.append(ok);
        for (const [name, bound] of levels) {
          const item = el("span", "", `${name} ${gauge.direction === "below" ? "≤" : "≥"} ${fmt(bound)}`);
          item.style.setProperty("--swatch", colourOf(name));
          legend.append(item);
        }
        group.append(legend);
        const tiles = el("div", "gauges");
        tiles.dataset.gauge = id;
        group.append(tiles);
        root.append(group);
        S.gaugeTiles.set(id, new Map());
      }
      if (!S.views.gauges.length) root.append(el("p", "hint", "This pipeline declares no gauges and has no window step to show."));
    }
    for (const gauge of S.views.gauges) {
      if (!touched(gauge.step)) continue;
      const id = `${gauge.step}/${gauge.measure}`;
      const tiles = S.gaugeTiles.get(id);
      const container = root.querySelector(`[data-gauge="${CSS.escape(id)}"]`);
      const latest = S.latest.get(gauge.step) || new Map();
      const values = new Map();
      // Only the keys that changed, unless the whole view is drawn anew.
      const changed = S.changed.get(gauge.step);
      const rows = all || !changed ? latest.values() : [...changed].map((k) => latest.get(k)).filter(Boolean);
      let added = false;
      for (const row of rows) {
        const by = byValue(row, gauge.by);
        const seen = values.get(by);
        if (!seen || seen.window_start <= row.window_start) values.set(by, row);
      }
      const bounds = Object.values(gauge.levels || {});
      const top = gauge.max ?? (bounds.length ? Math.max(...bounds) * 1.25 : null);
      const bottom = gauge.min ?? 0;
      for (const [by, row] of values) {
        let tile = tiles.get(by);
        if (!tile) {
          added = true;
          tile = { root: el("div", "gauge"), key: el("div", "key", by), value: el("div", "value"), bar: el("div") };
          const bar = el("div", "bar");
          bar.append(tile.bar);
          tile.root.append(tile.key, tile.value, bar);
          tile.root.dataset.key = by;
          const shown = tile;
          tile.root.addEventListener("mouseenter", () => { // the details, when asked for
            const r = shown.row;
            shown.root.title = `${by}: ${fmt(r[gauge.measure])} (${shown.root.dataset.level}), window ${clock(r.window_start)}${r.revision ? `, revision ${r.revision}` : ""}`;
          });
          tiles.set(by, tile);
          container.append(tile.root);
        }
        const value = row[gauge.measure];
        const level = levelOf(value, gauge.levels, gauge.direction);
        const text = fmt(value);
        if (tile.value.textContent !== text) tile.value.textContent = text;
        const className = `gauge level-${COLOURS[level] ? level : "warning"}`;
        if (tile.root.className !== className) tile.root.className = className;
        if (tile.root.dataset.level !== level) tile.root.dataset.level = level;
        tile.row = row;
        const span = (top ?? Math.max(Math.abs(value || 0) * 1.5, 1)) - bottom;
        tile.bar.style.width = `${Math.max(0, Math.min(100, ((value - bottom) / (span || 1)) * 100))}%`;
      }
      if (added) { // keep the tiles in key order
        container.replaceChildren(...[...tiles.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, t]) => t.root));
      }
    }
  }

  // --- heatmaps --------------------------------------------------------------------------
  // A chart is redrawn at most once a second, and less often when drawing it takes long:
  // never more than a tenth of the time goes to one chart.
  const chartCost = new Map(); // chart id -> ms its last draw took
  function due(id, all) {
    const now = performance.now();
    const every = Math.max(CHART_EVERY_MS, 10 * (chartCost.get(id) || 0));
    if (!all && now - (S.chartDrawn.get(id) || 0) < every) {
      if (!S.chartWaiting.has(id)) {
        S.chartWaiting.add(id);
        setTimeout(() => { S.chartWaiting.delete(id); S.dirty.add(id.split("|")[0]); }, every);
      }
      return false;
    }
    S.chartDrawn.set(id, now);
    return true;
  }
  function timed(id, drawing) {
    const began = performance.now();
    drawing();
    chartCost.set(id, performance.now() - began);
  }
  function drawHeatmaps(touched, all) {
    const root = $("heatmaps");
    if (!root.childElementCount) {
      S.views.heatmaps.forEach((h, i) => {
        root.append(el("h2", "", h.title || `${h.measure} by ${h.by} and window (${h.step})`));
        const chart = el("div", "chart");
        chart.id = `heatmap-${i}`;
        root.append(chart);
      });
      if (!S.views.heatmaps.length) root.append(el("p", "hint", "This pipeline declares no heatmap and has no window step to show."));
    }
    S.views.heatmaps.forEach((h, i) => {
      if (!touched(h.step) || !due(`${h.step}|heatmap-${i}`, all)) return;
      const perKey = S.windows.get(h.step) || new Map();
      const cells = new Map(); // by -> Map(window -> row)
      const windowSet = new Set();
      for (const windows of perKey.values()) {
        for (const row of windows.values()) {
          const by = byValue(row, h.by);
          if (!cells.has(by)) cells.set(by, new Map());
          cells.get(by).set(row.window_start, row);
          windowSet.add(row.window_start);
        }
      }
      const xs = [...windowSet].sort().slice(-120);
      const ys = [...cells.keys()].sort();
      const z = ys.map((y) => xs.map((x) => { const r = cells.get(y).get(x); return r ? r[h.measure] : null; }));
      const text = ys.map((y) => xs.map((x) => { const r = cells.get(y).get(x); return r && r.revision ? `revision ${r.revision}` : ""; }));
      const trace = { type: "heatmap", x: xs.map(clock), y: ys.map(plain), z, text, hoverongaps: false,
        colorscale: h.diverging ? "RdBu" : "YlOrRd", reversescale: !!h.diverging,
        hovertemplate: "%{y}<br>%{x}<br>" + plain(h.measure) + " %{z:.3g} %{text}<extra></extra>" };
      if (h.diverging) trace.zmid = 0;
      timed(`${h.step}|heatmap-${i}`, () => Plotly.react(`heatmap-${i}`, [trace], { margin: { l: 110, r: 10, t: 10, b: 60 }, yaxis: { automargin: true } }, { responsive: true, displaylogo: false }));
    });
  }

  // --- the map ------------------------------------------------------------------------------
  function worstAlerts() {
    const worst = new Map(); // key JSON -> {severity, state}
    for (const a of S.alerts.values()) {
      if (!OPEN.has(a.state)) continue;
      const seen = worst.get(a.key);
      if (!seen || severityRank(a.severity) > severityRank(seen.severity)) worst.set(a.key, a);
    }
    return worst;
  }
  function drawMap(all) {
    const view = S.views.map;
    const root = $("map");
    if (!view) { if (!root.childElementCount) root.append(el("p", "hint", "This pipeline's data carries no positions (lat/lon) to map.")); return; }
    if (!due("map|map", all)) return;
    const points = new Map(); // by -> row
    if (view.step === "readings") {
      for (const [device, row] of S.devices) points.set(device, row);
    } else {
      for (const row of (S.latest.get(view.step) || new Map()).values()) points.set(byValue(row, view.by), row);
    }
    const worst = worstAlerts();
    const xs = [], ys = [], colours = [], texts = [], values = [];
    for (const [by, row] of points) {
      const lat = row[view.lat], lon = row[view.lon];
      if (typeof lat !== "number" || typeof lon !== "number") continue;
      xs.push(lon); ys.push(lat);
      const alert = worst.get(JSON.stringify({ [view.by]: row[view.by] })) || [...worst.values()].find((a) => a.key && a.key.includes(JSON.stringify(String(row[view.by]))));
      if (view.color === "alerts") {
        const level = alert ? (alert.state === "flapping" ? "flapping" : alert.severity) : "ok";
        colours.push(colourOf(level));
      } else {
        values.push(row[view.color]);
      }
      texts.push(`${plain(by)}<br>${alert ? plain(`${alert.rule}: ${alert.state} (${alert.severity})`) : "no open alert"}` +
        (view.color !== "alerts" ? `<br>${plain(view.color)} ${plain(fmt(row[view.color]))}` : ""));
    }
    const meanLat = ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
    const marker = view.color === "alerts" ? { color: colours, size: 9 } : { color: values, size: 9, colorscale: "YlOrRd", showscale: true, colorbar: { title: { text: plain(view.color) } } };
    const trace = { type: "scatter", mode: "markers", x: xs, y: ys, text: texts, hovertemplate: "%{text}<br>%{y:.5f}, %{x:.5f}<extra></extra>", marker };
    const layout = { margin: { l: 60, r: 10, t: 10, b: 40 }, xaxis: { title: { text: "longitude" } },
      yaxis: { title: { text: "latitude" }, scaleanchor: "x", scaleratio: 1 / Math.cos((meanLat * Math.PI) / 180) }, hovermode: "closest" };
    timed("map|map", () => Plotly.react("map", [trace], layout, { responsive: true, displaylogo: false }));
  }

  // --- series ------------------------------------------------------------------------------
  function seriesChoice() {
    const view = S.views.series[Number($("series-view").value) || 0];
    return { view, key: $("series-key").value, seconds: Number($("series-range").value) };
  }
  function seriesTraces(view, key, rows) {
    const traces = [];
    for (const m of view.measures) {
      const own = rows.filter((r) => r[m] !== null && r[m] !== undefined);
      traces.push({ type: "scatter", mode: "lines+markers", name: plain(m), x: own.map((r) => r.window_start), y: own.map((r) => r[m]),
        text: own.map((r) => `revision ${r.revision || 0}`), hovertemplate: "%{x}<br>%{y:.4g} (%{text})<extra>" + plain(m) + "</extra>" });
      const corrected = own.filter((r) => (r.revision || 0) > 0);
      traces.push({ type: "scatter", mode: "markers", name: `${plain(m)} corrected`, x: corrected.map((r) => r.window_start), y: corrected.map((r) => r[m]),
        marker: { symbol: "diamond-open", size: 13, color: COLOURS.critical, line: { width: 2 } },
        text: corrected.map((r) => `corrected: revision ${r.revision}`), hovertemplate: "%{x}<br>%{y:.4g} %{text}<extra></extra>" });
    }
    return traces;
  }
  async function loadSeries() {
    if (!S.views.series.length) { $("series-chart").replaceChildren(el("p", "hint", "No series declared.")); return; }
    const { view, key, seconds } = seriesChoice();
    if (!key) return;
    const since = new Date(Date.now() - seconds * 1000).toISOString();
    const filter = encodeURIComponent(JSON.stringify({ [view.by]: key }));
    const stored = await json(`/api/v1/results/${encodeURIComponent(view.step)}?key=${filter}&since=${encodeURIComponent(since)}&limit=100000`);
    for (const row of stored) { row.step = view.step; applyResult(row); }
    const rows = seriesRows(view, key);
    const traces = seriesTraces(view, key, rows);
    for (const m of view.raw) {
      const raw = await json(`/api/v1/series?measurement=${encodeURIComponent(m)}&device=${encodeURIComponent(key)}&since=${encodeURIComponent(since)}&limit=100000`);
      traces.push({ type: "scatter", mode: "markers", name: `${plain(m)} (raw)`, x: raw.map((r) => r.ts), y: raw.map((r) => r[m]), marker: { size: 4, opacity: 0.5 } });
    }
    const layout = { margin: { l: 50, r: 10, t: 10, b: 40 }, legend: { orientation: "h" },
      xaxis: { type: "date", rangeslider: { visible: true }, rangeselector: { buttons: [
        { count: 5, label: "5m", step: "minute", stepmode: "backward" }, { count: 15, label: "15m", step: "minute", stepmode: "backward" },
        { count: 1, label: "1h", step: "hour", stepmode: "backward" }, { step: "all" }] } } };
    Plotly.react("series-chart", traces, layout, { responsive: true, displaylogo: false });
    S.seriesShown = { view, key, last: rows.length ? rows[rows.length - 1].window_start : "", rawSince: new Date().toISOString() };
  }
  async function pollRaw() { // raw readings are not on the event stream: extend from the API
    const shown = S.seriesShown;
    if (S.view !== "series" || !shown || !shown.view.raw.length) return;
    const since = shown.rawSince;
    shown.rawSince = new Date().toISOString();
    const first = shown.view.measures.length * 2;
    const update = { x: [], y: [] };
    for (const m of shown.view.raw) {
      const raw = await json(`/api/v1/series?measurement=${encodeURIComponent(m)}&device=${encodeURIComponent(shown.key)}&since=${encodeURIComponent(since)}&limit=100000`);
      update.x.push(raw.map((r) => r.ts)); update.y.push(raw.map((r) => r[m]));
    }
    if (S.seriesShown === shown && update.x.some((x) => x.length)) {
      Plotly.extendTraces("series-chart", update, shown.view.raw.map((_, i) => first + i));
    }
  }
  function seriesRows(view, key) {
    const rows = [];
    for (const windows of (S.windows.get(view.step) || new Map()).values()) {
      for (const row of windows.values()) if (byValue(row, view.by) === key) rows.push(row);
    }
    return rows.sort((a, b) => (a.window_start < b.window_start ? -1 : 1));
  }
  function drawSeries(dirty, all) {
    const shown = S.seriesShown;
    if (!shown || all) { if (all) loadSeries().catch(reportError); return; }
    const changed = [...dirty].some((d) => d.startsWith(`series:${shown.view.step}:`) && seriesRows(shown.view, shown.key).length);
    if (!changed) return;
    const rows = seriesRows(shown.view, shown.key);
    const fresh = rows.filter((r) => r.window_start > shown.last);
    const redrawn = rows.some((r) => r.window_start <= shown.last && (r.revision || 0) > 0 && !r._drawnRevision);
    if (redrawn) { // a correction of a window already drawn: mark it, keep every other point
      for (const r of rows) r._drawnRevision = r.revision;
      const div = $("series-chart");
      const traces = seriesTraces(shown.view, shown.key, rows);
      traces.forEach((t, i) => { Plotly.restyle(div, { x: [t.x], y: [t.y], text: [t.text] }, [i]); });
    } else if (fresh.length) {
      const update = { x: [], y: [], text: [] };
      const indices = [];
      shown.view.measures.forEach((m, i) => {
        update.x.push(fresh.map((r) => r.window_start)); update.y.push(fresh.map((r) => r[m]));
        update.text.push(fresh.map((r) => `revision ${r.revision || 0}`)); indices.push(i * 2);
      });
      Plotly.extendTraces("series-chart", update, indices);
    }
    if (rows.length) shown.last = rows[rows.length - 1].window_start;
  }
  function drawCorrections() {
    const list = $("corrections");
    const items = S.corrections.slice(0, 50).map((r) => {
      const li = el("li", "correction");
      li.append(el("time", "", clock(r.window_start)));
      li.append(document.createTextNode(`${r.step} ${r._key}: revision ${r.revision}` + (r.count !== undefined ? `, ${r.count} readings` : "")));
      return li;
    });
    if (!items.length) items.push(el("li", "hint", "no window corrected yet"));
    list.replaceChildren(...items);
  }

  // --- alerts ------------------------------------------------------------------------------
  function drawAlerts() {
    const wanted = $("alert-state").value, severity = $("alert-severity").value, rule = $("alert-rule").value;
    const keyText = $("alert-key").value.toLowerCase();
    const rows = [...S.alerts.values()].filter((a) => (wanted === "open" ? OPEN.has(a.state) : !wanted || a.state === wanted)
      && (!severity || a.severity === severity) && (!rule || a.rule === rule) && (!keyText || String(a.key).toLowerCase().includes(keyText)))
      .sort((a, b) => (a.event_time < b.event_time ? 1 : -1)).slice(0, 500);
    $("open-count").textContent = String([...S.alerts.values()].filter((a) => OPEN.has(a.state)).length);
    for (const [select, field] of [[$("alert-severity"), "severity"], [$("alert-rule"), "rule"]]) {
      const known = new Set([...select.options].map((o) => o.value));
      for (const a of S.alerts.values()) if (a[field] && !known.has(a[field])) { const o = el("option", "", a[field]); o.value = a[field]; select.append(o); known.add(a[field]); }
    }
    const body = $("open-alerts").tBodies[0];
    const lines = rows.map((a) => {
      const tr = el("tr", a.state === "flapping" ? "flapping" : "");
      tr.dataset.alert = a.alert_id;
      const state = el("span", `state level-${a.state === "flapping" ? "flapping" : a.state === "firing" ? (COLOURS[a.severity] ? a.severity : "warning") : "ok"}`, a.state === "flapping" ? "flapping (muted until it settles)" : a.state);
      const stateCell = el("td"); stateCell.append(state);
      const acked = a.acknowledged_by ? `${a.acknowledged_by} ${clock(a.acknowledged_at)}` : "";
      const silenced = a.silenced_until ? ` silenced until ${clock(a.silenced_until)}` : "";
      tr.append(el("td", "", clock(a.event_time)), el("td", "", a.rule), el("td", "key", a.key), stateCell,
        el("td", "", a.severity), el("td", "", fmt(a.value)), el("td", "", a.reason), el("td", "acked", acked + silenced));
      const actions = el("td", "actions");
      const note = el("input", "ack-note"); note.placeholder = "note"; note.setAttribute("aria-label", "note");
      const ack = el("button", "ack", "Acknowledge"); ack.type = "button";
      ack.addEventListener("click", () => acknowledge(a, note.value));
      const silence = el("button", "silence", "Silence 1h"); silence.type = "button";
      silence.addEventListener("click", () => silenceAlert(a, note.value));
      actions.append(note, ack, silence);
      tr.append(actions);
      return tr;
    });
    if (!lines.length) { const tr = el("tr"); const td = el("td", "hint", "no alert matches"); td.colSpan = 9; tr.append(td); lines.push(tr); }
    body.replaceChildren(...lines);
    $("alert-feed").replaceChildren(...S.feed.slice(0, MAX_FEED).map((t) => {
      const li = el("li", t.state === "flapping" ? "flapping" : "");
      li.append(el("time", "", clock(t.event_time)));
      li.append(document.createTextNode(`${t.rule} ${t.key}: ${t.previous_state} → ${t.state}${t.severity ? ` (${t.severity})` : ""} ${t.reason || ""}`));
      return li;
    }));
  }
  function reportError(error) { $("action-error").textContent = String(error.message || error); }
  async function acknowledge(alert, note, attempt = 0) {
    try {
      await api(`/api/v1/alerts/${encodeURIComponent(alert.alert_id)}/ack`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ note }) });
      $("action-error").textContent = "";
      await loadAlerts();
    } catch (error) {
      // An alert seen live is stored at the pipeline's next checkpoint: wait for it.
      if (String(error.message).includes("next checkpoint") && attempt < 10) {
        $("action-error").textContent = "the alert is not stored yet: acknowledging it once it is";
        setTimeout(() => acknowledge(alert, note, attempt + 1), 1000);
      } else reportError(error);
    }
  }
  async function silenceAlert(alert, note) {
    try {
      let key = null;
      try { key = JSON.parse(alert.key); } catch (_) { key = null; }
      await api("/api/v1/silences", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rule: alert.rule, key, for: "1h", note }) });
      $("action-error").textContent = "";
      await loadAlerts();
    } catch (error) { reportError(error); }
  }
  async function loadAlerts() {
    const rows = await json("/api/v1/alerts?limit=10000");
    for (const row of rows) S.alerts.set(row.alert_id, { ...(S.alerts.get(row.alert_id) || {}), ...row });
    S.dirty.add("alerts");
  }

  // --- overview: the /metrics figures ---------------------------------------------------------
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      if (m[3]) for (const part of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[part[1]] = part[2].replace(/\\(.)/g, "$1");
      samples.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return { samples, at: performance.now() };
  }
  const total = (metrics, name, where = () => true) => metrics.samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
  function quantile(metrics, previous, name, stream, q) {
    const buckets = (m) => m ? m.samples.filter((s) => s.name === `${name}_bucket` && s.labels.stream === stream) : [];
    const now = buckets(metrics), before = buckets(previous);
    let rows = now.map((b) => ({ le: Number(b.labels.le === "+Inf" ? Infinity : b.labels.le), n: b.value - (before.find((p) => p.labels.le === b.labels.le)?.value || 0) }));
    if (!rows.length) return null;
    if (rows[rows.length - 1].n <= 0) rows = now.map((b) => ({ le: Number(b.labels.le === "+Inf" ? Infinity : b.labels.le), n: b.value }));
    const count = rows[rows.length - 1].n;
    if (!count) return null;
    const found = rows.find((r) => r.n >= q * count);
    return found ? found.le : null;
  }
  function drawOverview() {
    const m = S.metrics, p = S.previousMetrics;
    if (!m) return;
    const seconds = p ? (m.at - p.at) / 1000 : 0;
    const rate = (name, where) => (p && seconds > 0 ? (total(m, name, where) - total(p, name, where)) / seconds : null);
    const cards = [
      ["lines read", total(m, "sensorstream_lines_total")], ["lines/s", rate("sensorstream_lines_total")],
      ["results/s", rate("sensorstream_results_total")], ["accepted", total(m, "sensorstream_accepted_total")],
      ["duplicates", total(m, "sensorstream_duplicates_total")], ["late", total(m, "sensorstream_late_total")],
      ["dead letters", total(m, "sensorstream_dead_letters_total")], ["rejected", total(m, "sensorstream_rejected_total")],
      ["alert transitions", total(m, "sensorstream_alert_transitions_total")], ["state rows", total(m, "sensorstream_state_rows")],
    ];
    $("cards").replaceChildren(...cards.map(([label, value]) => {
      const card = el("div", "card"); card.dataset.metric = label;
      card.append(el("div", "label", label), el("div", "value", value === null ? "…" : fmt(Math.round(value * 10) / 10)));
      return card;
    }));
    const streams = S.views.streams.map((stream) => {
      const q50 = quantile(m, p, "sensorstream_batch_latency_seconds", stream, 0.5), q99 = quantile(m, p, "sensorstream_batch_latency_seconds", stream, 0.99);
      const ms = (v) => (v === null ? "" : v === Infinity ? "> 5 s" : `≤ ${fmt(v * 1000)} ms`);
      // An input stream's records come in source batches; a derived one's (a join's, a derive's) are a step's rows.
      const own = (l) => l.stream === stream, made = (l) => l.step === stream;
      const perSecond = rate("sensorstream_batch_rows_sum", own), derived = rate("sensorstream_step_rows_total", made);
      return { stream, "records/s": fmt(perSecond === null ? null : perSecond + derived), records: total(m, "sensorstream_batch_rows_sum", own) + total(m, "sensorstream_step_rows_total", made),
        "latency p50": ms(q50), "latency p99": ms(q99) };
    });
    fillTable($("streams-table"), streams);
    fillTable($("steps-table"), S.views.steps.filter((s) => s.kind !== "stream").map((s) => ({ step: s.name, kind: s.kind, key: s.key.join(", "),
      late: total(m, "sensorstream_late_by_step_total", (l) => l.step === s.name), rejected: total(m, "sensorstream_rejected_by_step_total", (l) => l.step === s.name) })));
    fillTable($("watermarks-table"), m.samples.filter((s) => s.name === "sensorstream_watermark_lag_seconds").map((s) => ({ partition: s.labels.partition, stream: s.labels.stream, "lag (s)": fmt(s.value) })));
    fillTable($("reasons-table"), m.samples.filter((s) => s.name === "sensorstream_dead_letters_by_reason_total").map((s) => ({ reason: s.labels.reason_code, partition: s.labels.partition, count: s.value })));
    const rules = new Map();
    for (const s of m.samples.filter((x) => x.name === "sensorstream_alerts")) {
      const row = rules.get(s.labels.rule) || { rule: s.labels.rule, pending: 0, firing: 0, flapping: 0, resolved: 0 };
      row[s.labels.state] = (row[s.labels.state] || 0) + s.value; rules.set(s.labels.rule, row);
    }
    fillTable($("rules-table"), [...rules.values()]);
  }
  async function pollMetrics() {
    try {
      const text = await (await api("/metrics")).text();
      S.previousMetrics = S.metrics;
      S.metrics = parseMetrics(text);
      if (S.view === "overview") drawOverview();
    } catch (_) { /* the status shows the stream's health */ }
  }

  // --- dead letters and late readings ---------------------------------------------------------
  async function pollProblems() {
    if (S.view !== "problems") return;
    try {
      const [reasons, dead, late] = await Promise.all([json("/api/v1/dead_letters/by_reason"), json("/api/v1/dead_letters?limit=50"), json("/api/v1/late?limit=50")]);
      fillTable($("dead-reasons"), reasons);
      fillTable($("dead-letters"), dead);
      fillTable($("late-readings"), late);
      const m = S.metrics;
      if (m) fillTable($("late-steps"), m.samples.filter((s) => s.name === "sensorstream_late_by_step_total").map((s) => ({ step: s.labels.step, partition: s.labels.partition, late: s.value })));
    } catch (error) { fillTable($("dead-reasons"), [{ error: String(error.message || error) }]); }
  }
  async function pollDevices() {
    if (!S.views.map || S.views.map.step !== "readings" || S.view !== "map") return;
    try {
      for (const row of await json("/api/v1/devices?limit=100000")) S.devices.set(String(row.device_id), row);
      S.dirty.add("devices");
    } catch (_) { /* shown on the next poll */ }
  }

  // --- the event stream, read with fetch so that it can carry the token ---------------------------
  let lastId = 0;
  async function follow() {
    for (;;) {
      try {
        // since=0 first: the hub's recent events, stored or not yet, then what follows.
        const response = await api(`/api/v1/events?since=${lastId}`, { headers: { Accept: "text/event-stream" } });
        setStatus("live", "live");
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let kind = "message", data = "", id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) kind = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) id = Number(line.slice(4));
            }
            if (id !== null) lastId = id;
            if (data && (kind === "result" || kind === "alert")) receive(kind, JSON.parse(data), performance.now());
            else if (kind === "missed") catchUp().catch(() => {});
          }
        }
      } catch (error) {
        if (String(error.message) === "401") return;
      }
      setStatus("reconnecting", "down");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  // --- catching up from the API, then following -----------------------------------------------
  async function catchUp() {
    const since = new Date(Date.now() - 15 * 60 * 1000).toISOString();
    const steps = new Set([...S.views.gauges, ...S.views.heatmaps, ...S.views.series].map((v) => v.step));
    if (S.views.map && S.views.map.step !== "readings") steps.add(S.views.map.step);
    for (const step of steps) {
      const rows = await json(`/api/v1/results/${encodeURIComponent(step)}?since=${encodeURIComponent(since)}&limit=50000`);
      for (const row of rows) { row.step = step; applyResult(row); }
    }
    await loadAlerts();
    fillSeriesKeys();
    draw(true);
  }
  function fillSeriesKeys() {
    const view = S.views.series[Number($("series-view").value) || 0];
    if (!view) return;
    const keys = new Set();
    for (const windows of (S.windows.get(view.step) || new Map()).values()) for (const row of windows.values()) { keys.add(byValue(row, view.by)); break; }
    const list = [...keys].sort();
    $("series-keys").replaceChildren(...list.slice(0, 2000).map((k) => { const o = el("option"); o.value = k; return o; }));
    if (!$("series-key").value && list.length) $("series-key").value = list[0];
  }

  function show(view) {
    S.view = view;
    for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.view === view);
    for (const section of document.querySelectorAll(".view")) section.classList.toggle("active", section.id === `view-${view}`);
    if (view === "overview") drawOverview();
    if (view === "problems") pollProblems();
    if (view === "map") pollDevices().then(() => draw(true));
    else if (view === "series") { fillSeriesKeys(); loadSeries().catch(reportError); } else draw(true);
    history.replaceState(null, "", `#${view}`);
  }

  async function start() {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value);
      location.reload();
    });
    try {
      S.views = await json("/api/v1/dashboard");
    } catch (error) {
      if (String(error.message) !== "401") setStatus(`cannot read the views: ${error.message}`, "down");
      return;
    }
    document.title = `${S.views.title} · sensorstream`;
    $("title").textContent = S.views.title;
    S.views.series.forEach((v, i) => { const o = el("option", "", v.title || `${v.measures.join(", ")} (${v.step})`); o.value = String(i); $("series-view").append(o); });
    for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => show(button.dataset.view));
    for (const id of ["alert-state", "alert-severity", "alert-rule", "alert-key"]) $(id).addEventListener("input", () => S.dirty.add("alerts"));
    for (const id of ["series-view", "series-range"]) $(id).addEventListener("change", () => { if (id === "series-view") { $("series-key").value = ""; fillSeriesKeys(); } loadSeries().catch(reportError); });
    $("series-key").addEventListener("change", () => loadSeries().catch(reportError));
    follow(); // events from now on are queued while the history loads
    await catchUp().catch((error) => setStatus(`catching up failed: ${error.message}`, "down"));
    requestAnimationFrame(frame);
    const wanted = location.hash.slice(1);
    show(document.getElementById(`view-${wanted}`) ? wanted : "overview");
    window.addEventListener("hashchange", () => {
      const asked = location.hash.slice(1);
      if (asked !== S.view && document.getElementById(`view-${asked}`)) show(asked);
    });
    pollMetrics();
    setInterval(pollMetrics, 1000);
    setInterval(pollProblems, 3000);
    setInterval(pollDevices, 2000);
    setInterval(() => pollRaw().catch(() => {}), 2000);
  }

  // For tests and the benchmark: frame intervals, and delays from an event's arrival to the
  // first frame after it was drawn (ms).
  window.sensorstream = {
    stats: () => ({ frames: [...S.stats.frames], delays: [...S.stats.delays], work: [...S.stats.work], events: S.stats.events, drawn: S.stats.drawn }),
    reset: () => { S.stats.frames = []; S.stats.delays = []; S.stats.work = []; S.stats.events = 0; S.stats.drawn = 0; },
    show,
  };
  start();
})();
