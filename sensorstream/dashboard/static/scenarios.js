// The index of `sensorstream demo all`: one row per scenario, refreshed every second from
// GET /api/v1/scenarios. Every value from data goes in as text (textContent), and a link
// is made only from a URL the server gave, checked to be http(s).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const LEVEL = { running: "level-ok", starting: "level-notice", finished: "level-notice", stopped: "level-warning", failed: "level-critical" };
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const number = (value, digits = 0) => Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
  function link(url, text) {
    const a = el("a", "", text);
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") a.href = parsed.href;
    } catch (_) { /* not a URL: shown as text */ }
    return a;
  }
  function row(item) {
    const tr = el("tr");
    tr.dataset.scenario = item.name;
    const name = el("td");
    name.append(item.url ? link(item.url, item.name) : el("strong", "", item.name), el("div", "hint", item.title));
    const state = el("td");
    state.append(el("span", `state ${LEVEL[item.state] || ""}`, item.state));
    if (item.error) state.append(el("div", "error", item.error));
    const views = el("td", "views");
    if (item.url) {
      for (const view of ["overview", ...item.views]) {
        const a = link(`${item.url}#${view}`, view);
        a.dataset.view = view;
        views.append(a, " ");
      }
    }
    const cells = [item.document, item.job, null, number(item.lines), number(item.lines_per_second, 1), number(item.results), number(item.open_alerts), number(item.dead_letters)];
    tr.append(name);
    cells.forEach((value, i) => {
      if (i === 2) { tr.append(state); return; }
      const td = el("td", i >= 3 ? "number" : "", value);
      if (i >= 3) td.dataset.metric = ["lines", "lines_per_second", "results", "open_alerts", "dead_letters"][i - 3];
      tr.append(td);
    });
    tr.append(views);
    return tr;
  }
  async function refresh() {
    try {
      const response = await fetch("/api/v1/scenarios", { cache: "no-store" });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const items = await response.json();
      $("scenarios").tBodies[0].replaceChildren(...items.map(row));
      const live = items.filter((item) => item.state === "running").length;
      $("status").textContent = `${live} of ${items.length} running`;
      $("status").className = `status ${live ? "live" : "down"}`;
    } catch (error) {
      $("status").textContent = `cannot read the scenarios: ${error.message}`;
      $("status").className = "status down";
    }
  }
  refresh();
  setInterval(refresh, 1000);
})();
