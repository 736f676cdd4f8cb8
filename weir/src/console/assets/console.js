// weir console: draws every pipeline's graph left to right (longest-path layers)
// from /api/graph and updates its figures from the /api/events stream.
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path) => token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 170, H = 96, GX = 40, GY = 24;
  let graphs = new Map();  // pipeline -> {topology, layout, svgs}
  let runs = "";           // names and restart counts: a change reloads the graphs
  let last = new Map();    // pipeline -> previous stats frame, for the rates
  let seen = 0;            // highest event seq shown

  function el(tag, attrs, parent, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // Longest-path layering: a node's layer is one more than its deepest input.
  function layout(t) {
    const n = t.nodes.length, layer = new Array(n).fill(0);
    const edges = t.edges.filter((e) => !e.feedback);
    for (let pass = 0; pass < n; pass++) {
      let moved = false;
      for (const e of edges) {
        if (layer[e.to] < layer[e.from] + 1) { layer[e.to] = layer[e.from] + 1; moved = true; }
      }
      if (!moved) break;
    }
    const rows = [];
    const pos = t.nodes.map((node) => {
      const l = layer[node.id];
      rows[l] = (rows[l] || 0) + 1;
      return { x: l * (W + GX), y: (rows[l] - 1) * (H + GY) };
    });
    const width = (Math.max(0, ...layer) + 1) * (W + GX) - GX;
    const height = Math.max(1, ...rows.filter(Boolean)) * (H + GY) - GY;
    return { pos, width, height };
  }

  function fillColour(f) {
    // Green (empty) to amber to red (full).
    const x = Math.max(0, Math.min(1, f));
    const hue = 130 * (1 - x);
    return `hsl(${hue}, 70%, 40%)`;
  }

  function draw(t) {
    const box = el("div", { class: "pipeline", id: "p-" + t.pipeline });
    const head = el("div", { class: "head" }, box);
    el("h2", {}, head, t.pipeline);
    const status = el("span", { class: "badge" }, head, "…");
    const health = el("span", { class: "muted" }, head, "");
    const totals = el("div", { class: "totals muted" }, box, "");
    const controls = el("div", { class: "controls" }, box);
    const bottleneck = el("div", { class: "bottleneck" }, box, "");
    const lay = layout(t);
    const svg = el("svg:svg", { width: lay.width + 20, height: lay.height + 20, viewBox: `-10 -10 ${lay.width + 20} ${lay.height + 20}`, role: "img", "aria-label": "graph of " + t.pipeline }, box);
    svg.style.minWidth = Math.round(0.6 * (lay.width + 20)) + "px";  // CSSOM: allowed by the CSP
    const edges = t.edges.map((e, i) => {
      const a = lay.pos[e.from], b = lay.pos[e.to];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      const path = el("svg:path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, stroke: fillColour(0), "stroke-width": 2, "data-edge": i, "data-from": t.nodes[e.from].name, "data-to": t.nodes[e.to].name }, svg);
      const label = el("svg:text", { class: "cap", x: mx, y: (y1 + y2) / 2 - 4, "text-anchor": "middle", "data-edge-label": i }, svg, "0/" + e.capacity);
      // Out of a junction: the port's own credit, under the edge.
      const credit = el("svg:text", { class: "cap", x: mx, y: (y1 + y2) / 2 + 10, "text-anchor": "middle", "data-edge-credit": i }, svg, "");
      return { path, label, credit, edge: e };
    });
    const nodes = t.nodes.map((node) => {
      const p = lay.pos[node.id];
      const g = el("svg:g", { class: "node " + node.role, transform: `translate(${p.x},${p.y})`, "data-node": node.name }, svg);
      el("svg:title", {}, g, `${node.name} (${node.kind}), arbiter ${node.arbiter}` + (node.group ? `, pool ${node.group}` : ""));
      el("svg:rect", { width: W, height: H, rx: node.role === "stage" || node.role === "junction" ? 3 : 12 }, g);
      el("svg:text", { class: "name", x: 8, y: 15 }, g, node.name);
      el("svg:text", { class: "dim", x: 8, y: 29 }, g, node.kind + (node.group ? " · " + node.group : "") + " · a" + node.arbiter);
      const lines = [0, 1, 2, 3].map((k) => el("svg:text", { x: 8, y: 45 + 14 * k }, g, ""));
      return { g, lines, node };
    });
    return { box, status, health, totals, controls, built: false, pause: new Map(), bottleneck, edges, nodes, topology: t };
  }

  async function loadGraphs() {
    const res = await fetch(withToken("/api/graph"));
    if (!res.ok) throw new Error("graph: HTTP " + res.status);
    const body = await res.json();
    const root = document.getElementById("pipelines");
    root.textContent = "";
    graphs = new Map();
    for (const t of body.pipelines) {
      const view = draw(t);
      root.appendChild(view.box);
      graphs.set(t.pipeline, view);
    }
    if (body.pipelines.length === 0) el("p", { class: "muted" }, root, "No pipelines yet.");
  }

  // The controls (only when the console enables them): POST with the token.
  async function post(view, path, label) {
    const out = view.controls.querySelector(".result");
    try {
      const res = await fetch(path, { method: "POST", headers: token ? { Authorization: "Bearer " + token } : {} });
      const body = await res.json();
      out.textContent = label + ": " + (res.ok ? body.text : "refused (" + res.status + "): " + body.error);
      out.className = "result " + (res.ok ? "ok" : "bad");
    } catch (err) {
      out.textContent = label + ": " + err;
      out.className = "result bad";
    }
  }

  function buildControls(view, name, c) {
    view.built = true;
    const at = (stage, action) => "/api/control/" + encodeURIComponent(name) + "/" + (stage === null ? "" : encodeURIComponent(stage) + "/") + action;
    for (const stage of c.sources) {
      const b = el("button", { type: "button", "data-control": "pause", "data-stage": stage }, view.controls, "pause " + stage);
      b.addEventListener("click", () => {
        const action = b.dataset.control;
        post(view, at(stage, action), action + " " + stage);
      });
      view.pause.set(stage, b);
    }
    for (const stage of c.breakers) {
      const b = el("button", { type: "button", "data-control": "reset-breaker", "data-stage": stage }, view.controls, "reset breaker " + stage);
      b.addEventListener("click", () => post(view, at(stage, "reset-breaker"), "reset breaker " + stage));
    }
    for (const stage of c.pools) {
      const n = el("input", { type: "number", min: "1", value: "1", "aria-label": "replicas of " + stage, "data-replicas": stage }, view.controls);
      const b = el("button", { type: "button", "data-control": "resize", "data-stage": stage }, view.controls, "resize " + stage);
      b.addEventListener("click", () => post(view, at(stage, "resize") + "?replicas=" + encodeURIComponent(n.value), "resize " + stage));
    }
    if (c.checkpoints) {
      const b = el("button", { type: "button", "data-control": "checkpoint" }, view.controls, "checkpoint");
      b.addEventListener("click", () => post(view, at(null, "checkpoint"), "checkpoint"));
    }
    el("span", { class: "result muted" }, view.controls, "");
  }

  const rate = (now, before, dt) => (before === undefined || dt <= 0 ? 0 : Math.max(0, (now - before) / dt));
  const fmt = (x) => (x >= 10000 ? (x / 1000).toFixed(0) + "k" : x >= 100 ? x.toFixed(0) : x.toFixed(1));

  function update(frame) {
    const key = frame.pipelines.map((p) => p.name + ":" + (p.status ? p.status.restarts : 0)).join(",");
    if (key !== runs) { runs = key; loadGraphs().then(() => update(frame)).catch(showError); return; }
    const ready = document.getElementById("ready");
    ready.textContent = frame.ready.ready ? "ready" : "not ready: " + frame.ready.problems.map((p) => p.pipeline + (p.stage ? "/" + p.stage : "") + " " + p.reason).join("; ");
    ready.className = "badge " + (frame.ready.ready ? "ok" : "bad");
    for (const p of frame.pipelines) {
      const view = graphs.get(p.name);
      if (!view) continue;
      const prev = last.get(p.name);
      const dt = prev ? p.stats.uptime - prev.stats.uptime : 0;
      const state = p.status ? p.status.state : (p.stats.finished ? "Finished" : "Running");
      view.status.textContent = state;
      view.status.className = "badge " + (state === "Running" ? "ok" : state === "Restarting" ? "warn" : "bad");
      view.health.textContent = p.health.status + (p.health.reasons ? ": " + p.health.reasons.join("; ") : "");
      const t = p.totals;
      view.totals.textContent = `in ${t.taken_in} · delivered ${t.delivered} · filtered ${t.filtered} · dead-lettered ${t.dead_lettered} · failed ${t.failed} · in flight ${t.in_flight} · restarts ${t.restarts} · conservation: ${p.conservation.state}` + (p.conservation.detail ? " (" + p.conservation.detail + ")" : "");
      if (frame.controls && p.controllable && !view.built) buildControls(view, p.name, p.controllable);
      const b = p.bottleneck;
      view.bottleneck.textContent = b ? `Bottleneck: ${b.stage} (${b.reason === "stalled" ? "stalled" : "input " + Math.round(b.input_fill * 100) + "% full, output " + (b.output_fill === null ? "none (sink)" : Math.round(b.output_fill * 100) + "%")})` + (b.blocked.length ? `, blocking ${b.blocked.join(", ")}` : "") : "No bottleneck: every stage keeps up.";
      view.bottleneck.className = "bottleneck" + (b ? " found" : "");
      view.bottleneck.dataset.stage = b ? b.stage : "";
      // A box shows its input edges' load, the figure the edges are drawn with:
      // what was sent to it and not settled (mailbox, queue, the batch in hand).
      const input = new Map();
      for (const e of p.edges) {
        const sum = input.get(e.to) || { queued: 0, capacity: 0 };
        sum.queued += e.queued; sum.capacity += e.capacity;
        input.set(e.to, sum);
      }
      p.stats.stages.forEach((s, i) => {
        const n = view.nodes[i];
        if (!n) return;
        const ps = prev && prev.stats.stages[i];
        const rin = rate(s.received, ps && ps.received, dt), rout = rate(s.emitted, ps && ps.emitted, dt);
        const load = input.get(i);
        n.lines[0].textContent = `in ${fmt(rin)}/s · out ${fmt(rout)}/s`;
        n.lines[1].textContent = (load ? `input ${load.queued}/${load.capacity}` : "source") + (n.node.role === "sink" ? "" : ` · credit ${s.credit}`);
        n.lines[2].textContent = `restarts ${s.restarts} · dlq ${s.dead_lettered} · failed ${s.failed}`;
        const pb = view.pause.get(s.name);
        if (pb) { pb.dataset.control = s.paused ? "resume" : "pause"; pb.textContent = (s.paused ? "resume " : "pause ") + s.name; }
        n.lines[3].textContent = [n.node.breaker ? `breaker ${s.breaker}` : "", s.paused ? "PAUSED" : "", s.stalled ? "STALLED" : "", `blocked ${s.blocked.toFixed(1)}s`].filter(Boolean).join(" · ");
        n.g.setAttribute("class", "node " + n.node.role + (b && b.id === i ? " bottleneck" : "") + (s.breaker === "open" ? " open" : s.breaker === "half_open" ? " half" : ""));
      });
      p.edges.forEach((e, i) => {
        const v = view.edges[i];
        if (!v) return;
        const f = e.capacity ? e.queued / e.capacity : 0;
        v.path.setAttribute("stroke", fillColour(f));
        v.path.setAttribute("stroke-width", 2 + 4 * Math.min(1, f));
        v.label.textContent = `${e.queued}/${e.capacity}`;
        // A junction's edges carry their port's own credit (its box shows the sum).
        const from = view.nodes[e.from];
        const perPort = from && from.node.role === "junction" && e.credit !== null && e.credit !== undefined;
        v.credit.textContent = perPort ? `c ${e.credit}` : "";
      });
      last.set(p.name, p);
    }
    const list = document.getElementById("events");
    for (const e of frame.events) {
      if (e.seq <= seen) continue;
      seen = e.seq;
      const li = el("li", { class: e.kind });
      el("span", { class: "kind" }, li, e.kind);
      el("span", { class: "muted" }, li, new Date(e.at_ms).toLocaleTimeString() + " " + (e.pipeline || "manager") + (e.stage ? "/" + e.stage : "") + ": ");
      el("span", {}, li, e.text);
      const none = document.getElementById("no-events");
      if (none) none.remove();
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 200) list.removeChild(list.lastChild);
    }
  }

  function showError(err) {
    document.getElementById("conn").textContent = String(err);
  }

  function connect() {
    const source = new EventSource(withToken("/api/events"));
    const conn = document.getElementById("conn");
    source.addEventListener("open", () => { conn.textContent = "live"; });
    source.addEventListener("stats", (ev) => { try { update(JSON.parse(ev.data)); } catch (err) { showError(err); } });
    source.addEventListener("end", () => { conn.textContent = "console stopped"; source.close(); });
    source.addEventListener("error", () => { conn.textContent = "reconnecting…"; });
  }

  connect();
})();
