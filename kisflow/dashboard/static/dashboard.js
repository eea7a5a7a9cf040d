// The kisflow dashboard: renders /events (server-sent events of /api/flows) as plain DOM.
// Every figure is set with textContent; the only markup taken from the server is the
// chain's SVG, which the dashboard drew itself from escaped names.
"use strict";

const COLUMNS = [
  ["name", "stage", "text"], ["mode", "mode", "text"], ["state", "state", "text"],
  ["calls", "calls"], ["failed_calls", "failed calls"], ["rows_in", "rows in"],
  ["rows_out", "rows out"], ["filtered", "filtered"], ["dead_letters", "dead letters"],
  ["retries", "retries"], ["rows_per_second", "rows/s (10 s)"], ["p50_ms", "p50 ms"],
  ["p99_ms", "p99 ms"], ["last_error", "last error", "text"],
];
const STREAM = [
  ["position", "position"], ["committed", "committed rows"], ["lag", "lag"],
  ["in_flight", "batches in flight"], ["checkpoint_age", "checkpoint age"],
];
const views = new Map();  // flow name -> {section, parts}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function time(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

function ms(value) {
  return value === null || value === undefined ? "–" : value.toFixed(3);
}

function errorText(error) {
  if (!error) return "";
  return `${error.type}: ${error.message} (at ${time(error.time)})`;
}

function figure(stage, key) {
  const value = stage[key];
  if (key === "p50_ms" || key === "p99_ms") return ms(value);
  if (key === "rows_per_second") return value.toFixed(1);
  if (key === "last_error") return errorText(value);
  return String(value);
}

function streamFigure(stream, key) {
  const value = stream[key];
  if (value === null || value === undefined) return "–";
  if (key === "checkpoint_age") return `${value.toFixed(1)} s`;
  if (key === "position") return typeof value === "string" ? value : JSON.stringify(value);
  return String(value);
}

function makeFlow(flow) {
  const section = el("section", { class: "flow", "data-flow": flow.name });
  const head = el("div", { class: "flow-head" });
  head.append(el("h2", {}, flow.name));
  const status = el("span", { class: "badge", "data-figure": "status" });
  const outcome = el("span", { class: "badge", "data-figure": "outcome" });
  const kind = el("span", { class: "badge", "data-figure": "kind" });
  const totals = el("span", { class: "totals" });
  const total = {};
  for (const [key, label] of [["runs", "runs"], ["runs_completed", "completed"],
    ["runs_failed", "failed"], ["source_rows", "source rows"], ["batches", "batches"]]) {
    total[key] = el("b", { "data-figure": key });
    totals.append(`${label} `, total[key], "  ");
  }
  head.append(status, outcome, kind, totals);
  const chain = el("div", { class: "chain" });
  const stream = el("dl", { class: "stream", "data-stream": "" });
  const streamValues = {};
  for (const [key, label] of STREAM) {
    const item = el("div");
    streamValues[key] = el("dd", { "data-figure": key });
    item.append(el("dt", {}, label), streamValues[key]);
    stream.append(item);
  }
  const flowError = el("div", { class: "flow-error", "data-figure": "flow_error" });
  const table = el("table");
  const headRow = el("tr");
  for (const [, label, cls] of COLUMNS) headRow.append(el("th", cls ? { class: cls } : {}, label));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(headRow);
  section.append(head, chain, stream, flowError, table);
  return { section, status, outcome, kind, total, chain, chainKey: null, stream, streamValues,
    flowError, tbody: table.tBodies[0], rows: [] };
}

async function drawChain(view, flow, key) {
  view.chainKey = key;
  try {
    const reply = await fetch(`api/chain.svg?flow=${encodeURIComponent(flow.name)}`);
    if (!reply.ok || view.chainKey !== key) return;
    const doc = new DOMParser().parseFromString(await reply.text(), "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName !== "svg") return;
    view.chain.replaceChildren(document.importNode(svg, true));
    paintChain(view, flow);
  } catch (err) {
    view.chainKey = null;  // try again on the next event
  }
}

function paintChain(view, flow) {
  for (const stage of flow.stages) {
    const node = view.chain.querySelector(`#stage-${stage.position}`);
    if (node) node.setAttribute("data-state", stage.state);
  }
}

function updateFlow(view, flow) {
  const section = view.section;
  section.setAttribute("data-status", flow.status);
  view.status.textContent = flow.status;
  view.status.setAttribute("data-value", flow.status);
  // The outcome is that of the flow's last run: shown once the flow has ended.
  view.outcome.hidden = flow.status !== "ended" || !flow.outcome;
  view.outcome.textContent = flow.outcome || "";
  view.outcome.setAttribute("data-value", flow.outcome || "");
  view.kind.textContent = flow.kind;
  for (const [key, node] of Object.entries(view.total)) node.textContent = String(flow[key]);
  const key = flow.stages.map((s) => `${s.name}/${s.mode}`).join("|");
  if (key !== view.chainKey) drawChain(view, flow, key);
  paintChain(view, flow);
  view.stream.hidden = flow.stream === null;
  if (flow.stream !== null) {
    for (const [name, node] of Object.entries(view.streamValues)) {
      node.textContent = streamFigure(flow.stream, name);
    }
  }
  view.flowError.hidden = !flow.last_error;
  view.flowError.textContent = flow.last_error
    ? `run failed${flow.last_error.stage ? ` in ${flow.last_error.stage}` : ""}: ` +
      errorText(flow.last_error)
    : "";
  if (view.rows.length !== flow.stages.length) {
    view.tbody.replaceChildren();
    view.rows = flow.stages.map((stage) => {
      const row = el("tr", { "data-position": String(stage.position) });
      const cells = {};
      for (const [name, , cls] of COLUMNS) {
        cells[name] = el("td", Object.assign({ "data-figure": name }, cls ? { class: cls } : {}));
        row.append(cells[name]);
      }
      view.tbody.append(row);
      return { row, cells };
    });
  }
  flow.stages.forEach((stage, i) => {
    const { row, cells } = view.rows[i];
    row.setAttribute("data-stage", stage.name);
    row.setAttribute("data-state", stage.state);
    for (const [name] of COLUMNS) cells[name].textContent = figure(stage, name);
  });
}

function render(flows) {
  const main = document.getElementById("flows");
  document.getElementById("empty").hidden = flows.length > 0;
  for (const flow of flows) {
    let view = views.get(flow.name);
    if (!view) {
      view = makeFlow(flow);
      views.set(flow.name, view);
      main.append(view.section);
    }
    updateFlow(view, flow);
  }
  document.body.setAttribute("data-updated", String(Date.now()));
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("events");
  source.onopen = () => {
    status.dataset.state = "live";
    status.textContent = "live";
  };
  source.onmessage = (event) => {
    render(JSON.parse(event.data));
    status.dataset.state = "live";
    status.textContent = `live · updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
  };
  source.onerror = () => {
    status.dataset.state = "lost";
    status.textContent = "disconnected (the run may have ended); retrying…";
  };
}

connect();
