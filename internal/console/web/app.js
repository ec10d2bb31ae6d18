// nex console: a single page over the console's JSON API. Every value from the cluster is
// put into the page as text (textContent, createElement): never as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="nex-token"]').content;
// The session key comes in the fragment of the URL nex ui printed (a fragment is never
// sent to a server) and is kept in this origin's storage, which no other port's page can
// read (a cookie went to every port of the host); every request of the API carries it.
const KEY = (() => {
  const m = /(?:^#|&)key=([0-9a-f]+)/.exec(location.hash);
  if (m) {
    localStorage.setItem("nex-key", m[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("nex-key") || "";
})();
// the workloads table draws only the rows in view (each ROW_HEIGHT pixels high), and
// OVERSCAN more above and below: 10,000 workloads cost what 60 do
const ROW_HEIGHT = 32;
const OVERSCAN = 15;

const store = {
  session: null,
  workloads: new Map(), // id -> workload (listing fields)
  known: new Map(), // every workload this page has seen, by id (what "gone" marks)
  seq: 0, // counts live updates: a listing asked for before one does not undo it
  loaded: false,
  nodes: [],
  names: new Map(), // node id -> name, of every node seen answering (a lost node's row names it)
  events: [], // recent events, newest last
  listeners: new Set(), // functions told of each live message: (kind, data)
};

// ---- DOM helpers: text only ----

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children) append(e, c);
  return e;
}

function append(parent, c) {
  if (c === undefined || c === null || c === false) return;
  if (Array.isArray(c)) { c.forEach((x) => append(parent, x)); return; }
  parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
}

function link(href, text, cls) { return el("a", { href, class: cls, text }); }
function short(id) { return id ? String(id).slice(0, 12) : ""; }
function badge(state) { return el("span", { class: "badge state-" + String(state || "unknown").replace(/[^a-z_]/g, ""), text: state || "?" }); }
function when(t) {
  if (!t || t.startsWith("0001-")) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}
function age(t) {
  if (!t || t.startsWith("0001-")) return "";
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return Math.floor(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}
function bytes(n) {
  if (!n) return "0";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function tagList(tags) {
  return Object.entries(tags || {}).sort().map(([k, v]) => el("span", { class: "tag", text: k + "=" + v }));
}
function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    dl.append(el("dt", { text: k }), el("dd", null, v));
  }
  return dl;
}
function banner(msg) {
  const b = document.getElementById("banner");
  b.textContent = msg || "";
  b.hidden = !msg;
}

// ---- the API ----

async function answer(res) {
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = body && body.message ? body.message : res.statusText;
    const code = body && body.error_code ? body.error_code : String(res.status);
    const err = new Error(res.status + " " + code + ": " + msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

async function api(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json", "X-Nex-Key": KEY }, credentials: "same-origin", cache: "no-store" }));
}

async function post(path, body) {
  return answer(await fetch(path, {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "Content-Type": "application/json", "X-Nex-Token": TOKEN, "X-Nex-Key": KEY },
    body: JSON.stringify(body || {}),
  }));
}

// ---- live updates: one event stream for the whole page ----

function connectLive() {
  const es = new EventSource("/api/live/events?key=" + encodeURIComponent(KEY));
  const dot = document.getElementById("live");
  es.onopen = () => { dot.className = "live on"; };
  es.onerror = () => { dot.className = "live off"; };
  es.addEventListener("event", (m) => {
    const ev = JSON.parse(m.data);
    // the state the event says, at once; the workload's info follows
    const w = store.workloads.get(ev.workload_id);
    const state = { started: "running", restarted: "running", stopped: "stopped", failed: "failed" }[ev.type];
    if (w && state) { w.state = state; w.seq = ++store.seq; notify("workload", w); }
    store.events.push(ev);
    if (store.events.length > 200) store.events.splice(0, store.events.length - 200);
    notify("event", ev);
    if (!ev.workload_id || ev.namespace === "system") refreshNodesSoon();
  });
  es.addEventListener("workload", (m) => {
    const w = JSON.parse(m.data);
    w.seq = ++store.seq;
    store.workloads.set(w.id, w);
    store.known.set(w.id, w);
    notify("workload", w);
  });
  es.addEventListener("gone", (m) => {
    // its node forgot it (a stop by a user, a removal): the row stays, marked, until the
    // page is reloaded
    const g = JSON.parse(m.data);
    const w = store.known.get(g.id);
    if (w) {
      if (w.state !== "failed") w.state = "stopped";
      w.gone = true;
      w.seq = ++store.seq;
      store.workloads.set(w.id, w);
    }
    notify("gone", g);
  });
  es.addEventListener("feed_error", (m) => {
    const e = JSON.parse(m.data);
    banner("Live events" + (e.namespace ? " of namespace " + e.namespace : "") + ": " + e.message);
  });
}

function notify(kind, data) { for (const f of store.listeners) f(kind, data); }

let nodesTimer = null;
function refreshNodesSoon() {
  if (nodesTimer) return;
  nodesTimer = setTimeout(async () => {
    nodesTimer = null;
    try { setNodes(await api("/api/nodes")); notify("nodes", store.nodes); } catch (e) { /* shown on the next page load */ }
  }, 500);
}

async function loadWorkloads() {
  const asked = store.seq;
  const list = await api("/api/workloads");
  const next = new Map(list.map((w) => [w.id, w]));
  for (const [id, w] of store.workloads) {
    if (w.seq > asked) next.set(id, w); // a live update newer than the listing
    else if (!next.has(id) && (w.gone || w.state === "stopped" || w.state === "failed")) {
      // what this page saw end and its node forget stays, marked, until the page is reloaded
      w.gone = true;
      next.set(id, w);
    }
  }
  for (const [id, w] of next) store.known.set(id, w);
  store.workloads = next;
  store.loaded = true;
  return list;
}

// ---- router ----

let leave = null; // the current page's cleanup

function route() {
  if (leave) { leave(); leave = null; }
  store.listeners.clear();
  const hash = location.hash || "#/";
  const parts = hash.slice(2).split("/").map(decodeURIComponent);
  const main = document.getElementById("main");
  main.replaceChildren();
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", (parts[0] || "overview") === a.dataset.route);
  }
  const pages = { "": overviewPage, workloads: workloadsPage, workload: workloadPage, node: nodePage, group: groupPage };
  const page = pages[parts[0]] || overviewPage;
  leave = page(main, parts.slice(1)) || null;
}

// ---- overview ----

function overviewPage(main) {
  const nodesBox = el("div", { class: "card" }, el("p", { class: "muted", text: "Asking the nodes…" }));
  const eventsBox = el("ul", { class: "timeline", id: "recent-events" });
  const nsBox = el("div");
  main.append(el("h1", { text: "Cluster overview" }), el("h2", { text: "Nodes" }), nodesBox,
    el("div", { class: "grid2" },
      el("div", null, el("h2", { text: "Recent events" }), el("div", { class: "card" }, eventsBox)),
      el("div", null, el("h2", { text: "Namespaces" }), el("div", { class: "card" }, nsBox))));
  const showNodes = (nodes) => nodesBox.replaceChildren(nodeTable(nodes));
  const showEvents = () => eventsBox.replaceChildren(...store.events.slice(-50).reverse().map(eventItem));
  api("/api/nodes").then((n) => { setNodes(n); showNodes(n); })
    .catch((e) => nodesBox.replaceChildren(el("p", { class: "result err", text: e.message })));
  api("/api/events").then((r) => {
    const seen = new Set(store.events.map((e) => e.time + e.type + e.workload_id));
    for (const e of r.events) if (!seen.has(e.time + e.type + e.workload_id)) store.events.push(e);
    store.events.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    showEvents();
    if (r.errors && r.errors.length) eventsBox.after(el("p", { class: "muted", text: r.errors.join("; ") }));
  }).catch((e) => eventsBox.replaceChildren(el("li", { class: "result err", text: e.message })));
  api("/api/session").then((s) => {
    nsBox.replaceChildren(el("p", null, "This console works in namespace ", el("b", { text: s.namespace }),
      s.namespace === "system" ? " (it sees every namespace)." : " (it sees this namespace only)."),
    el("p", null, "Events followed: ", s.namespaces.map((n) => el("span", { class: "tag", text: n }))));
  }).catch(() => {});
  store.listeners.add((kind, data) => {
    if (kind === "event") showEvents();
    if (kind === "nodes") showNodes(data);
  });
}

function nodeTable(nodes) {
  const head = ["Name", "ID", "State", "Version", "Uptime", "Workloads", "Nexlets", "Tags", "Memory asked / offered", "CPU asked / offered"];
  const rows = nodes.map((n) => {
    const c = n.capacity || {};
    return el("tr", { dataset: { node: n.node_id } },
      el("td", null, link("#/node/" + encodeURIComponent(n.node_id), n.name || short(n.node_id))),
      el("td", { class: "mono", text: short(n.node_id) }),
      el("td", null, badge(n.state), n.coordinator ? el("span", { class: "coord", text: " coordinator", title: "holds the cluster's coordinator lease" }) : null),
      el("td", { text: n.version }),
      el("td", { text: age(n.started_at) }),
      el("td", { text: String(n.workloads) }),
      el("td", { class: "wrap" }, (n.nexlets || []).map(nexletText).join(", ")),
      el("td", { class: "wrap" }, tagList(n.tags)),
      el("td", { text: c.memory ? bytes(c.requested_memory) + " / " + bytes(c.memory - (c.reserved_memory || 0)) : "" }),
      el("td", { text: c.cpu ? (c.requested_cpu || 0) + " / " + (c.cpu - (c.reserved_cpu || 0)) : "" }));
  });
  rows.push(...lostNodes(nodes).map((l) => el("tr", { dataset: { node: l.id }, class: "lost" },
    el("td", { text: l.name || short(l.id) }), el("td", { class: "mono", text: short(l.id) }), el("td", null, badge("lost")),
    el("td", { colspan: "7", class: "muted", text: "not heard from since " + when(l.lastSeen) + "; the coordinator moves its workloads" }))));
  if (!rows.length) return el("p", { class: "muted", text: "No node answered." });
  return el("table", { id: "nodes" }, el("thead", null, el("tr", null, head.map((h) => el("th", { text: h })))), el("tbody", null, rows));
}

function setNodes(nodes) {
  store.nodes = nodes;
  for (const n of nodes) store.names.set(n.node_id, n.name);
}

// lostNodes are the nodes a node_lost event named that do not answer now, newest first
// (a node that answers again is no longer lost).
function lostNodes(answering) {
  const here = new Set(answering.map((n) => n.node_id));
  const lost = new Map();
  for (const ev of store.events) {
    const id = ev.type === "node_lost" && ev.data && ev.data.node_id;
    if (id && !here.has(id)) lost.set(id, { id, lastSeen: ev.data.last_seen, name: store.names.get(id) });
  }
  return [...lost.values()].reverse();
}

function nexletText(x) {
  let s = x.register_type + " " + (x.workloads || 0) + "/" + (x.max_workloads || "∞");
  const iso = [x.isolation && "isolation " + x.isolation, x.sandbox && "sandbox " + x.sandbox, x.health].filter(Boolean);
  if (iso.length) s += " (" + iso.join(", ") + ")";
  return s;
}

function eventItem(e) {
  const li = el("li", null, el("span", { class: "t", text: when(e.time) }), el("b", { text: e.type }), " ");
  if (e.workload_id) li.append(link("#/workload/" + encodeURIComponent(e.workload_id), short(e.workload_id), "mono"), " (" + e.namespace + ")");
  else if (e.node_id) li.append("node ", link("#/node/" + encodeURIComponent(e.node_id), short(e.node_id), "mono"));
  if (e.exit_code !== undefined && e.exit_code !== null) li.append(" exit " + e.exit_code);
  if (e.message) li.append(" — " + e.message);
  if (e.data && e.data.reason) li.append(" (" + e.data.reason + ")");
  return li;
}

// ---- workloads ----

const COLUMNS = [
  ["id", "ID"], ["name", "Name"], ["namespace", "Namespace"], ["type", "Type"], ["lifecycle", "Lifecycle"],
  ["state", "State"], ["node_id", "Node"], ["group", "Group"], ["tags", "Tags"], ["started_at", "Started"], ["restarts", "Restarts"],
];

const view = { sort: "started_at", asc: false, filters: {} };

function workloadsPage(main) {
  main.append(el("h1", null, "Workloads ", el("span", { class: "muted", id: "count" })));
  const filters = el("div", { class: "filters" });
  const search = el("input", { type: "search", id: "search", placeholder: "name or ID prefix", value: view.filters.q || "" });
  filters.append(search);
  const selects = {};
  for (const f of ["namespace", "type", "lifecycle", "state", "node_id", "group"]) {
    const s = el("select", { id: "f-" + f, title: f }, el("option", { value: "", text: "any " + f.replace("_id", "") }));
    selects[f] = s;
    filters.append(s);
  }
  const tagInput = el("input", { type: "search", id: "f-tag", placeholder: "tag k=v", value: view.filters.tag || "" });
  filters.append(tagInput);
  const table = el("table", { id: "workloads" });
  const thead = el("thead"), tbody = el("tbody");
  table.append(thead, tbody);
  const scroller = el("div", { class: "scroller", id: "workloads-scroll" }, table);
  main.append(filters, scroller);
  const ui = { thead, tbody, scroller, selects, rows: [] };
  const rerender = () => renderWorkloads(ui);
  window.nexConsole.rerender = rerender;
  let drawing = false;
  scroller.addEventListener("scroll", () => {
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(() => { drawing = false; drawWindow(ui); });
  });
  const onInput = () => {
    view.filters.q = search.value.trim();
    view.filters.tag = tagInput.value.trim();
    for (const [f, s] of Object.entries(selects)) view.filters[f] = s.value;
    scroller.scrollTop = 0;
    rerender();
  };
  search.addEventListener("input", onInput);
  tagInput.addEventListener("input", onInput);
  for (const s of Object.values(selects)) s.addEventListener("change", onInput);
  let pending = false;
  store.listeners.add((kind) => {
    if ((kind === "workload" || kind === "gone") && !pending) {
      pending = true;
      requestAnimationFrame(() => { pending = false; rerender(); });
    }
  });
  if (store.loaded) rerender();
  else tbody.replaceChildren(el("tr", null, el("td", { colspan: COLUMNS.length, class: "muted", text: "Listing…" })));
  loadWorkloads().then(rerender).catch((e) => tbody.replaceChildren(el("tr", null, el("td", { colspan: COLUMNS.length, class: "result err", text: e.message }))));
}

function matches(w, f) {
  if (f.q && !(String(w.name).includes(f.q) || String(w.id).startsWith(f.q))) return false;
  for (const k of ["namespace", "type", "lifecycle", "state", "node_id", "group"]) {
    if (f[k] && String(w[k] || "") !== f[k]) return false;
  }
  if (f.tag) {
    const i = f.tag.indexOf("=");
    const k = i < 0 ? f.tag : f.tag.slice(0, i);
    const tags = w.tags || {};
    if (!(k in tags)) return false;
    if (i >= 0 && tags[k] !== f.tag.slice(i + 1)) return false;
  }
  return true;
}

function sortKey(w, col) {
  if (col === "tags") return Object.entries(w.tags || {}).map((p) => p.join("=")).sort().join(",");
  if (col === "restarts") return w.restarts || 0;
  return w[col] === undefined || w[col] === null ? "" : w[col];
}

// renderWorkloads filters and sorts the workloads and draws those in view.
function renderWorkloads(ui) {
  const all = Array.from(store.workloads.values());
  fillSelects(ui.selects, all);
  const f = view.filters;
  const rows = all.filter((w) => matches(w, f));
  const col = view.sort, dir = view.asc ? 1 : -1;
  rows.sort((a, b) => {
    const x = sortKey(a, col), y = sortKey(b, col);
    if (x < y) return -dir;
    if (x > y) return dir;
    return a.id < b.id ? -1 : 1;
  });
  ui.rows = rows;
  ui.thead.replaceChildren(el("tr", null, COLUMNS.map(([k, label]) => el("th", {
    class: "sortable" + (k === col ? " sorted" + (view.asc ? " asc" : "") : ""), text: label, dataset: { col: k },
    onclick: () => { view.asc = view.sort === k ? !view.asc : true; view.sort = k; renderWorkloads(ui); },
  }))));
  drawWindow(ui);
  const count = document.getElementById("count");
  if (count) count.textContent = rows.length === all.length ? "(" + all.length + ")" : "(" + rows.length + " of " + all.length + ")";
}

// drawWindow draws the rows in view, between two spacers as high as the rows left out.
function drawWindow(ui) {
  const rows = ui.rows, sc = ui.scroller;
  const first = Math.max(0, Math.floor(sc.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((sc.scrollTop + (sc.clientHeight || 800)) / ROW_HEIGHT) + OVERSCAN);
  const frag = document.createDocumentFragment();
  frag.appendChild(spacer(first * ROW_HEIGHT));
  for (let i = first; i < last; i++) frag.appendChild(workloadRow(rows[i]));
  frag.appendChild(spacer((rows.length - last) * ROW_HEIGHT));
  if (!rows.length) frag.appendChild(el("tr", null, el("td", { colspan: COLUMNS.length, class: "muted", text: store.workloads.size ? "No workload matches." : "No workloads." })));
  ui.tbody.replaceChildren(frag);
}

function spacer(height) {
  const tr = el("tr", { class: "spacer", "aria-hidden": "true" }, el("td", { colspan: COLUMNS.length }));
  tr.style.height = height + "px"; // CSSOM, which the CSP allows (a style attribute it would not)
  return tr;
}

function workloadRow(w) {
  const node = store.nodes.find((n) => n.node_id === w.node_id);
  return el("tr", { dataset: { id: w.id } },
    el("td", { class: "mono" }, link("#/workload/" + encodeURIComponent(w.id), short(w.id))),
    el("td", { class: "name", text: w.name }),
    el("td", { text: w.namespace }),
    el("td", { text: w.type }),
    el("td", { text: w.lifecycle }),
    el("td", { class: "state", title: w.gone ? "no longer listed by its node" : null }, badge(w.state)),
    el("td", null, w.node_id ? link("#/node/" + encodeURIComponent(w.node_id), node && node.name ? node.name : short(w.node_id), "mono") : ""),
    el("td", null, w.group ? link(groupHref(w), short(w.group) + (w.group_version ? " v" + w.group_version : ""), "mono") : ""),
    el("td", { class: "wrap" }, tagList(w.tags)),
    el("td", { text: age(w.started_at), title: when(w.started_at) }),
    el("td", { text: String(w.restarts || 0) }));
}

function fillSelects(selects, all) {
  for (const [f, s] of Object.entries(selects)) {
    const values = new Set();
    for (const w of all) if (w[f]) values.add(String(w[f]));
    if (view.filters[f]) values.add(view.filters[f]);
    const want = Array.from(values).sort();
    const have = Array.from(s.options).slice(1).map((o) => o.value);
    if (want.join("\n") === have.join("\n")) continue;
    const first = s.options[0];
    s.replaceChildren(first, ...want.map((v) => el("option", { value: v, text: f === "node_id" ? nodeName(v) : v })));
    s.value = view.filters[f] || "";
  }
}

function nodeName(id) {
  const n = store.nodes.find((x) => x.node_id === id);
  return n && n.name ? n.name : short(id);
}

// ---- a workload ----

function resultBox() { return el("div", { class: "result", id: "result", hidden: true }); }
function showResult(box, ok, text) { box.hidden = false; box.className = "result " + (ok ? "ok" : "err"); box.textContent = text; }

function actionButton(label, question, run, box, cls) {
  const b = el("button", { text: label, class: cls, dataset: { action: label.toLowerCase() } });
  b.addEventListener("click", async () => {
    if (!window.confirm(typeof question === "function" ? question() : question)) return;
    b.disabled = true;
    try { showResult(box, true, await run()); } catch (e) { showResult(box, false, e.message); } finally { b.disabled = false; }
  });
  return b;
}

function workloadPage(main, [id]) {
  const head = el("h1", null, "Workload ", el("span", { class: "mono", text: id }));
  const body = el("div", null, el("p", { class: "muted", text: "Asking its node…" }));
  main.append(head, body);
  let logs = null;
  const box = resultBox(); // kept when live updates draw the page again
  const cloneName = el("input", { id: "clone-name", placeholder: "copy's name (optional)", title: "the copy's name; the same as the workload's when empty" });
  const draw = (w) => {
    const actions = el("div", { class: "actions" },
      actionButton("Stop", "Stop workload " + w.name + " (" + w.id + ")?", async () => {
        const r = await post("/api/workloads/" + encodeURIComponent(w.id) + "/stop");
        return "Stopped: " + r.id + " is " + r.state;
      }, box, "danger"),
      cloneName,
      actionButton("Clone", () => "Start a copy of " + w.name + (cloneName.value ? " named " + cloneName.value : "") + "?", async () => {
        const r = await post("/api/workloads/" + encodeURIComponent(w.id) + "/clone", cloneName.value ? { name: cloneName.value } : {});
        return "Cloned: the copy is " + r.id + (r.name ? " (" + r.name + ")" : "") + " on node " + r.node_id;
      }, box),
      actionButton("Remove", "Remove " + w.name + " and its record? (only a workload that ended can be removed)", async () => {
        const r = await post("/api/workloads/" + encodeURIComponent(w.id) + "/remove");
        return "Removed: " + r.id;
      }, box, "danger"));
    if (w.group) actions.append(scaleControl(w.namespace, w.group, box));
    head.replaceChildren("Workload ", el("span", { class: "wname", text: w.name }), " ", badge(w.state));
    const def = w.definition || {};
    let sr = "";
    try { sr = JSON.stringify(def.start_request, null, 2); } catch (e) { sr = String(def.start_request); }
    const timeline = el("ul", { class: "timeline", id: "timeline" });
    body.replaceChildren(actions, box,
      el("div", { class: "grid2" },
        el("div", { class: "card" }, kv([
          ["ID", el("span", { class: "mono", text: w.id })], ["Namespace", w.namespace], ["Type", w.type], ["Lifecycle", w.lifecycle],
          ["State", badge(w.state)], ["Health", w.health], ["Node", w.node_id ? link("#/node/" + encodeURIComponent(w.node_id), nodeName(w.node_id)) : ""],
          ["Nexlet", w.nexlet_id], ["Started", when(w.started_at)], ["Exit code", w.exit_code], ["Exit reason", w.exit_reason],
          ["Last exit code", w.last_exit_code], ["Restarts", String(w.restarts || 0)], ["Error", w.error],
          ["Group", w.group ? [link(groupHref(w), w.group), " v" + (w.group_version || 1)] : ""],
          ["Tags", tagList(w.tags)], ["Description", w.description],
        ])),
        el("div", { class: "card" }, el("h2", { text: "Metadata" }),
          kv(Object.entries(w.metadata || {}).sort().map(([k, v]) => [k, el("span", { class: "mono", text: v })])))),
      el("h2", { text: "Definition (environment values and sealed values hidden)" }),
      el("pre", { class: "def", id: "definition", text: sr }),
      el("h2", { text: "Events" }), el("div", { class: "card" }, timeline),
      el("h2", { text: "Logs" }));
    loadTimeline(w, timeline);
    if (!logs) logs = logView(w);
    body.append(logs.node);
  };
  let shown = null;
  const load = () => api("/api/workloads/" + encodeURIComponent(id)).then((w) => { shown = w; draw(w); }).catch((e) => {
    if (shown && e.status === 404) { // stopped and forgotten since: the page stays, marked
      if (!shown.gone) draw(Object.assign(shown, { state: "stopped", gone: true, error: "its node no longer lists it" }));
      return;
    }
    body.replaceChildren(el("p", { class: "result err", text: e.message }));
  });
  load();
  store.listeners.add((kind, data) => {
    if (kind === "workload" && data.id === id) load();
  });
  return () => { if (logs) logs.close(); };
}

function groupHref(w) { return "#/group/" + encodeURIComponent(w.namespace) + "/" + encodeURIComponent(w.group); }
function groupPath(ns, gid) { return "/api/groups/" + encodeURIComponent(gid) + "?ns=" + encodeURIComponent(ns); }

function scaleControl(ns, gid, box) {
  const n = el("input", { type: "number", min: 0, max: 1000, id: "replicas", title: "replicas" });
  api(groupPath(ns, gid)).then((g) => { n.value = g.replicas; }).catch(() => {});
  return el("span", null, "Group replicas ", n, " ", actionButton("Scale", () => "Scale group " + gid + " to " + n.value + " replicas?", async () => {
    const r = await post("/api/groups/" + encodeURIComponent(gid) + "/scale?ns=" + encodeURIComponent(ns), { replicas: Number(n.value) });
    return "Scaled: group " + r.id + " wants " + r.replicas + " copies, " + (r.copies || []).length + " listed" + (r.pending ? "; pending: " + r.pending : "");
  }, box));
}

function loadTimeline(w, ul) {
  const seen = new Set();
  const add = (e) => {
    const k = e.time + e.type;
    if (seen.has(k)) return;
    seen.add(k);
    ul.prepend(eventItem(e));
  };
  api("/api/workloads/" + encodeURIComponent(w.id) + "/events?ns=" + encodeURIComponent(w.namespace))
    .then((evs) => { evs.forEach(add); if (!evs.length && !ul.children.length) ul.append(el("li", { class: "muted", text: "No events kept." })); })
    .catch((e) => ul.append(el("li", { class: "result err", text: e.message })));
  store.listeners.add((kind, e) => { if (kind === "event" && e.workload_id === w.id) add(e); });
}

// logView follows a workload's output: live lines over server-sent events, the last lines
// of its history first; follow (scroll along), pause (hold new lines), a text filter.
function logView(w) {
  const box = el("div", { class: "logs", id: "logs" });
  const filter = el("input", { type: "search", id: "log-filter", placeholder: "filter lines" });
  const follow = el("input", { type: "checkbox", id: "log-follow", checked: true });
  const pause = el("button", { text: "Pause", id: "log-pause" });
  const more = el("button", { text: "Load history (5000 lines)", id: "log-history" });
  const status = el("span", { class: "muted", id: "log-status" });
  const node = el("div", null, el("div", { class: "filters" }, filter, el("label", null, follow, " follow"), pause, more, status), box);
  let lines = [], held = [], paused = false, lastHist = "";
  const MAX = 20000;
  const lineNode = (l) => el("div", { class: "line" + (l.stream === "stderr" ? " stderr" : "") }, el("span", { class: "t", text: when(l.time) }), l.line);
  const shows = (l) => !filter.value || l.line.includes(filter.value);
  const redraw = () => {
    const frag = document.createDocumentFragment();
    for (const l of lines) if (shows(l)) frag.appendChild(lineNode(l));
    box.replaceChildren(frag);
    if (follow.checked) box.scrollTop = box.scrollHeight;
  };
  const add = (batch) => {
    lines.push(...batch);
    if (lines.length > MAX) { lines = lines.slice(-MAX); redraw(); return; }
    const frag = document.createDocumentFragment();
    for (const l of batch) if (shows(l)) frag.appendChild(lineNode(l));
    box.appendChild(frag);
    if (follow.checked) box.scrollTop = box.scrollHeight;
  };
  let queued = [], history = false;
  const es = new EventSource("/api/live/logs/" + encodeURIComponent(w.namespace) + "/" + encodeURIComponent(w.id) + "?key=" + encodeURIComponent(KEY));
  es.onopen = () => { status.textContent = "following"; };
  es.onerror = () => { status.textContent = "reconnecting…"; };
  let frame = false;
  es.addEventListener("log", (m) => {
    const l = JSON.parse(m.data);
    if (!history) { queued.push(l); return; }
    if (l.time <= lastHist) return;
    if (paused) { held.push(l); pause.textContent = "Resume (" + held.length + " new)"; return; }
    queued.push(l);
    if (!frame) { frame = true; requestAnimationFrame(() => { frame = false; const b = queued; queued = []; add(b); }); }
  });
  es.addEventListener("feed_error", (m) => { status.textContent = JSON.parse(m.data).message; });
  const loadHistory = (tail) => api("/api/workloads/" + encodeURIComponent(w.id) + "/logs?ns=" + encodeURIComponent(w.namespace) + "&tail=" + tail)
    .then((hist) => {
      lines = hist;
      if (hist.length) lastHist = hist[hist.length - 1].time;
      const live = queued.filter((l) => l.time > lastHist);
      queued = [];
      history = true;
      lines.push(...live);
      redraw();
    }).catch((e) => { history = true; status.textContent = e.message; });
  loadHistory(200);
  filter.addEventListener("input", redraw);
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused && held.length) { const b = held; held = []; add(b); }
  });
  more.addEventListener("click", () => { history = false; loadHistory(5000); });
  return { node, close: () => es.close() };
}

// ---- a node ----

function nodePage(main, [id]) {
  main.append(el("h1", null, "Node ", el("span", { class: "mono", text: id })));
  const body = el("div", null, el("p", { class: "muted", text: "Asking the node…" }));
  main.append(body);
  api("/api/nodes/" + encodeURIComponent(id)).then((p) => {
    const n = p.node, c = n.capacity || {};
    const box = resultBox();
    const delay = el("input", { id: "lameduck-delay", value: "30s", title: "delay before its workloads stop" });
    const actions = el("div", { class: "actions" }, "Delay ", delay, " ", actionButton("Lameduck",
      "Put node " + (n.name || n.node_id) + " in lameduck mode? It bids no more and stops its workloads after the delay.", async () => {
        const r = await post("/api/nodes/" + encodeURIComponent(n.node_id) + "/lameduck", { delay: delay.value });
        return "Node " + r.node_id + " is in lameduck mode; it stops its workloads at " + when(r.deadline);
      }, box, "danger"));
    main.querySelector("h1").replaceChildren("Node ", el("span", { text: n.name || n.node_id }), " ", badge(n.state));
    const wl = el("tbody", null, p.workloads.map(workloadRow));
    body.replaceChildren(actions, box, el("div", { class: "grid2" },
      el("div", { class: "card" }, kv([["ID", el("span", { class: "mono", text: n.node_id })], ["Nexus", n.nexus], ["Version", n.version + (n.commit ? " (" + n.commit + ")" : "")],
        ["Started", when(n.started_at)], ["Uptime", age(n.started_at)], ["Workloads", String(n.workloads)], ["Tags", tagList(n.tags)],
        ["Memory", c.memory ? bytes(c.requested_memory) + " asked of " + bytes(c.memory) + " (" + bytes(c.reserved_memory) + " kept back)" : ""],
        ["CPU", c.cpu ? (c.requested_cpu || 0) + " asked of " + c.cpu + " (" + (c.reserved_cpu || 0) + " kept back)" : ""], ["Placement", c.placement]])),
      el("div", { class: "card" }, el("h2", { text: "Nexlets" }), (n.nexlets || []).map((x) => kv([
        ["Nexlet", el("b", { text: x.register_type + " " + x.nexlet_id })], ["Version", x.version], ["Health", x.health],
        ["Lifecycles", (x.supported_lifecycles || []).join(", ")], ["Workloads", (x.workloads || 0) + " of " + (x.max_workloads || "any")],
        ["Isolation", x.isolation], ["Sandbox", x.sandbox], ["Cgroups", x.cgroups], ["Limits", (x.limits || []).join(", ")], ["Last heartbeat", when(x.last_heartbeat)]])))),
    el("h2", { text: "Workloads on this node" }),
    p.workload_error ? el("p", { class: "result err", text: p.workload_error }) : null,
    el("table", null, el("thead", null, el("tr", null, COLUMNS.map(([, l]) => el("th", { text: l })))), wl));
  }).catch((e) => body.replaceChildren(el("p", { class: "result err", id: "node-error", text: e.message })));
}

// ---- a replica group ----

function groupPage(main, [ns, id]) {
  main.append(el("h1", null, "Replica group ", el("span", { class: "mono", text: id })));
  const body = el("div", null, el("p", { class: "muted", text: "Asking the coordinator…" }));
  main.append(body);
  api(groupPath(ns, id)).then((g) => {
    const box = resultBox();
    const copies = g.copies || [];
    const current = copies.filter((c) => (c.group_version || 1) === g.version).length;
    const rollout = current + " of " + copies.length + " copies run version " + g.version +
      (current < copies.length ? " (an update is replacing the others, or was cut short and the coordinator resumes it)" : "");
    body.replaceChildren(el("div", { class: "actions" }, scaleControl(ns, g.id, box)), box,
      el("div", { class: "card" }, kv([["Name", g.name], ["Namespace", g.namespace], ["Replicas", String(g.replicas)], ["Copies", String(copies.length)],
        ["Max per node", String(g.max_per_node)], ["Spread", g.spread], ["Version", String(g.version)], ["Rollout", rollout], ["Pending", g.pending]])),
      el("h2", { text: "Copies" }),
      el("table", null, el("thead", null, el("tr", null, COLUMNS.map(([, l]) => el("th", { text: l })))), el("tbody", null, (g.copies || []).map(workloadRow))));
  }).catch((e) => body.replaceChildren(el("p", { class: "result err", text: e.message })));
}

// ---- start ----

// for tests and the benchmark: bench(text) takes a listing as the server sends it and
// returns the milliseconds from its arrival to the table laid out
window.nexConsole = {
  store, view, rerender: null,
  bench(text) {
    const t0 = performance.now();
    const list = JSON.parse(text);
    store.workloads = new Map(list.map((w) => [w.id, w]));
    store.loaded = true;
    window.nexConsole.rerender();
    void document.getElementById("workloads").offsetHeight; // style and layout, done now
    return performance.now() - t0;
  },
};

window.addEventListener("hashchange", route);
api("/api/session").then((s) => {
  store.session = s;
  document.getElementById("session").textContent = "namespace " + s.namespace + (s.version ? " · nex " + s.version : "");
}).catch((e) => banner(e.message));
api("/api/nodes").then(setNodes).catch(() => {});
connectLive();
route();
