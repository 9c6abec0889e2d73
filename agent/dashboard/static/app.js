// The dashboard's only script (served from the package; CSP default-src 'self').
// Live parts: every element with data-live="URL" is re-fetched when /events says the store
// changed. Countdowns: every element with data-deadline="unix seconds" ticks each second.
"use strict";

function refresh() {
  document.querySelectorAll("[data-live]").forEach(async (el) => {
    const res = await fetch(el.dataset.live, { credentials: "same-origin" });
    if (res.status === 401) { location.reload(); return; }  // the session ended: say so
    if (res.ok) { el.innerHTML = await res.text(); tick(); }
  });
}

function left(seconds) {
  if (seconds <= 0) return "expired";
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${String(s).padStart(2, "0")}s`;
}

function tick() {
  const now = Math.floor(Date.now() / 1000);
  document.querySelectorAll("[data-deadline]").forEach((el) => {
    const rest = Number(el.dataset.deadline) - now;
    el.textContent = left(rest);
    el.classList.toggle("soon", rest < 300);
  });
}

function listen() {
  const badge = document.getElementById("live");
  const source = new EventSource(`${document.body.dataset.root}/events`);
  source.addEventListener("open", () => badge && badge.classList.remove("off"));
  source.addEventListener("error", () => {
    badge && badge.classList.add("off");
    // closed for good: refused (the session ended), not a dropped connection it retries
    if (source.readyState === EventSource.CLOSED) location.reload();
  });
  source.addEventListener("change", refresh);
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 1000);
  if (document.querySelector("[data-live]")) listen();
});

// Charts and graphs: data in a data-* attribute (no inline scripts under the CSP), drawn
// with the vendored libraries (uPlot 1.6.32, cytoscape.js 3.35.0; MIT; see LICENSE files).
function charts() {
  const fees = document.getElementById("fees-chart");
  if (fees && window.uPlot) {
    const d = JSON.parse(fees.dataset.chart);
    new window.uPlot({ width: Math.min(900, fees.clientWidth || 900), height: 220,
      series: [{}, { label: "fees (sat)", stroke: "#f7931a", fill: "rgba(247,147,26,.15)" }] },
      [d.t, d.fees_sat], fees);
  }
  const graph = document.getElementById("fleet-graph");
  if (graph && window.cytoscape) {
    const g = JSON.parse(graph.dataset.graph);
    window.fleetGraph = window.cytoscape({
      container: graph,
      elements: [...g.nodes.map((n) => ({ data: n })), ...g.edges.map((e) => ({ data: e }))],
      layout: { name: "circle" },
      style: [
        { selector: "node", style: { label: "data(label)", color: "#e4e8ec", "font-size": 10,
          "background-color": "#58a6ff" } },
        { selector: "node[?self]", style: { "background-color": "#f7931a" } },
        { selector: "node[!active]", style: { "background-color": "#8a96a3" } },
        { selector: "edge", style: { width: 2, "line-color": "#3fb950", label: "data(label)",
          color: "#8a96a3", "font-size": 7, "text-rotation": "autorotate" } },
      ],
    });
    graph.dataset.drawn = String(g.nodes.length);
  }
}
document.addEventListener("DOMContentLoaded", charts);
