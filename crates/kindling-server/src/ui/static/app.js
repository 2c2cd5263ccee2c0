// kindling's dashboard: one page, drawn from the JSON and SSE APIs that automation uses.
// Hand-written, no build step (ARCHITECTURE.md, "The dashboard"). The URL holds the state: the
// path names the page, the query the machines' filter and sort, so every view is a link.

const csrf = document.querySelector('meta[name="kindling-csrf"]').content;
const main = document.getElementById("main");
const live = document.getElementById("live");

// The machines, by name, as /api/v1/machines gave them and the event stream since changed them.
const machines = new Map();
let loaded = null;
let redraw = null; // the current page's function to draw again on news

// Stages in boot order, for sorting and for the overview.
const STAGES = ["boot.ipxe", "ipxe", "kernel", "initrd", "ignition", "mcs", "images",
  "installed", "bootstrap", "join", "node-ready"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new Error("logged out");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

function age(time) {
  if (!time) return "";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86400)}d ago`;
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// "rendered-worker-1a2b3c", with where it is meant to go and whether it drifted.
function rendering(m) {
  if (!m.rendering && !m.desired) return "";
  const moving = m.desired && m.desired !== m.rendering ? ` → ${m.desired}` : "";
  return `${m.rendering || "?"}${moving}${m.drift ? " (drifted)" : ""}`;
}

// When a certificate stops working, as days from now.
function expiry(time) {
  if (!time) return "";
  const days = Math.floor((Date.parse(time) - Date.now()) / 86400000);
  return days < 0 ? "expired" : days === 0 ? "today" : `in ${days}d`;
}

// Whether an event moves its machine's stage: as in the server's list, the install window's
// bookkeeping (armed, disarmed) does not.
function isStage(event) {
  return event.stage !== "armed" && event.stage !== "disarmed";
}

function isError(m) {
  return m.stage === "denied" || (m.status && m.status >= 400) || /fail/i.test(m.stage || "");
}

async function loadMachines() {
  const list = await api("/api/v1/machines");
  for (const m of list.machines) machines.set(m.name, m);
}

// The event stream: every event moves its machine's row, wherever the page is.
function follow() {
  const source = new EventSource("/api/v1/events");
  let pending = false;
  source.addEventListener("open", () => { live.textContent = "live"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; });
  source.addEventListener("event", (message) => {
    const event = JSON.parse(message.data);
    event.id = message.lastEventId;
    const m = event.machine && machines.get(event.machine);
    if (m && isStage(event)) {
      m.stage = event.stage;
      m.time = event.time;
      m.status = event.status;
      m.detail = event.detail;
    }
    window.dispatchEvent(new CustomEvent("kindling-event", { detail: event }));
    // Draw at most once a frame, however many events came.
    if (!pending) {
      pending = true;
      requestAnimationFrame(() => { pending = false; if (redraw) redraw(); });
    }
  });
}

// ---- Overview --------------------------------------------------------------------------------

// The install's phases; once every machine is Ready the install is done and the cluster is in
// its day 2 (updates, drift, certificates).
const PHASES = ["waiting for machines", "bootstrap", "control plane", "workers", "done", "day 2"];

function phaseOf(all) {
  const seen = all.filter((m) => m.stage);
  if (seen.length === 0) return 0;
  const ready = (m) => m.stage === "node-ready" || m.ready === true;
  const masters = all.filter((m) => m.role === "master");
  const workers = all.filter((m) => m.role === "worker");
  if (!masters.every(ready)) {
    return all.some((m) => m.role === "bootstrap" && m.stage) && !masters.some(ready) ? 1 : 2;
  }
  return workers.every(ready) ? 5 : 3;
}

function overview() {
  const all = [...machines.values()];
  const counts = new Map();
  for (const m of all) counts.set(m.stage || "no contact", (counts.get(m.stage || "no contact") || 0) + 1);
  const errors = all.filter(isError);
  const last = all.map((m) => m.time).filter(Boolean).sort().pop();
  const phase = phaseOf(all);
  main.replaceChildren(
    el("h1", { text: "Overview" }),
    el("ol", { class: "phase", "aria-label": "Install phase" },
      PHASES.map((p, i) => el("li", { text: p, class: i < phase ? "done" : null, "aria-current": i === phase ? "step" : null }))),
    el("h2", { text: errors.length ? `Errors (${errors.length})` : "No errors" }),
    errors.length ? el("ul", { class: "errors" }, errors.slice(0, 20).map((m) =>
      el("li", {}, el("a", { href: `/ui/machines/${encodeURIComponent(m.name)}`, text: m.name }),
        ` ${m.stage}${m.detail ? ": " + m.detail : ""}`))) : null,
    el("p", { text: last ? `Last progress ${age(last)} (${new Date(last).toLocaleString()}).` : "No machine has asked to boot yet." }),
    el("h2", { text: "Machines by stage" }),
    el("div", { class: "cards" }, [...counts.entries()].sort((a, b) => STAGES.indexOf(a[0]) - STAGES.indexOf(b[0])).map(([stage, n]) =>
      el("a", { class: "card", href: stage === "no contact" ? "/ui/machines?stage=none" : `/ui/machines?stage=${encodeURIComponent(stage)}` },
        el("div", { class: "n", text: String(n) }), el("div", { text: stage })))),
  );
}

// ---- Machines: a virtualised table ---------------------------------------------------------

const COLUMNS = [
  { key: "name", label: "Name" },
  { key: "role", label: "Role" },
  { key: "mac", label: "MAC", wide: true },
  { key: "ip", label: "IP", wide: true },
  { key: "stage", label: "Stage" },
  { key: "time", label: "Last event", wide: true },
  { key: "rendering", label: "Rendering", wide: true },
  { key: "ready", label: "Ready", wide: true },
  { key: "certificatesExpire", label: "Certificates", wide: true },
];
const ROW = 34;

function machinesPage() {
  const params = new URLSearchParams(location.search);
  const state = {
    q: params.get("q") || "",
    stage: params.get("stage") || "",
    role: params.get("role") || "",
    sort: params.get("sort") || "name",
    dir: params.get("dir") === "desc" ? "desc" : "asc",
  };
  let rows = [];

  const save = () => {
    const next = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) {
      if (v && !(k === "sort" && v === "name") && !(k === "dir" && v === "asc")) next.set(k, v);
    }
    const url = location.pathname + (next.toString() ? "?" + next : "");
    history.replaceState(null, "", url);
  };

  const stages = () => ["", "none", ...new Set([...machines.values()].map((m) => m.stage).filter(Boolean))];
  const search = el("input", { type: "search", id: "q", value: state.q, placeholder: "name, MAC or IP", "aria-label": "Search machines" });
  const stageSelect = el("select", { id: "stage", "aria-label": "Stage" });
  const roleSelect = el("select", { id: "role", "aria-label": "Role" },
    ["", "bootstrap", "master", "worker"].map((r) => el("option", { value: r, text: r || "any role", selected: r === state.role })));
  const count = el("span", { class: "count", role: "status", "aria-live": "polite" });
  const head = el("div", { class: "head", role: "row" });
  const body = el("div", { class: "body", role: "rowgroup", tabindex: "0", "aria-label": "Machines" });
  const spacer = el("div");
  body.append(spacer);
  const table = el("div", { class: "grid", role: "table", "aria-label": "Machines", "aria-rowcount": "0" },
    el("div", { role: "rowgroup" }, head), body);

  const fillStages = () => {
    const have = stages();
    stageSelect.replaceChildren(...have.map((s) => el("option", { value: s, text: s === "" ? "any stage" : s === "none" ? "no contact" : s, selected: s === state.stage })));
  };

  const drawHead = () => {
    head.replaceChildren(...COLUMNS.map((c) => el("div", {
      class: "cell" + (c.wide ? " wide" : ""), role: "columnheader",
      "aria-sort": state.sort === c.key ? (state.dir === "asc" ? "ascending" : "descending") : "none",
    }, el("button", {
      type: "button", text: c.label + (state.sort === c.key ? (state.dir === "asc" ? " ▲" : " ▼") : ""),
      onclick: () => {
        if (state.sort === c.key) state.dir = state.dir === "asc" ? "desc" : "asc";
        else { state.sort = c.key; state.dir = "asc"; }
        save(); drawHead(); compute(); drawRows();
      },
    }))));
  };

  const compute = () => {
    const q = state.q.toLowerCase();
    rows = [...machines.values()].filter((m) =>
      (!state.stage || (state.stage === "none" ? !m.stage : m.stage === state.stage)) &&
      (!state.role || m.role === state.role) &&
      (!q || m.name.toLowerCase().includes(q) || (m.mac || "").toLowerCase().includes(q) || (m.ip || "").includes(q)));
    const key = state.sort;
    const value = (m) => key === "stage" ? STAGES.indexOf(m.stage) : (m[key] ?? "");
    rows.sort((a, b) => {
      const x = value(a), y = value(b);
      const order = x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1;
      return state.dir === "asc" ? order : -order;
    });
    spacer.style.height = `${rows.length * ROW}px`;
    table.setAttribute("aria-rowcount", String(rows.length + 1));
    count.textContent = `${rows.length} of ${machines.size} machines`;
  };

  const cell = (m, c) => {
    let text = m[c.key];
    let node = null;
    if (c.key === "stage") node = el("span", { class: "stage " + (m.stage || ""), text: m.stage || "no contact" });
    if (c.key === "time") text = age(m.time);
    if (c.key === "ready") text = m.ready === undefined || m.ready === null ? "" : m.ready ? "Ready" : "not Ready";
    if (c.key === "rendering") text = rendering(m);
    if (c.key === "certificatesExpire") text = expiry(m.certificatesExpire);
    return el("div", { class: "cell" + (c.wide ? " wide" : "") + (c.key === "mac" || c.key === "ip" ? " mono" : ""), role: "cell", title: c.key === "time" ? m.time : null },
      node || String(text ?? ""));
  };

  // Only the rows in view (and a few around them) are in the DOM.
  const drawRows = () => {
    const first = Math.max(0, Math.floor(body.scrollTop / ROW) - 5);
    const last = Math.min(rows.length, first + Math.ceil(body.clientHeight / ROW) + 10);
    const nodes = [spacer];
    for (let i = first; i < last; i++) {
      const m = rows[i];
      const open = () => go(`/ui/machines/${encodeURIComponent(m.name)}`);
      const row = el("div", {
        class: "row", role: "row", tabindex: "-1", "aria-rowindex": String(i + 2), "data-name": m.name,
        onclick: open,
        onkeydown: (e) => { if (e.key === "Enter") open(); },
      }, COLUMNS.map((c) => cell(m, c)));
      // Through the style object: the page's CSP allows no style attribute.
      row.style.top = `${i * ROW}px`;
      nodes.push(row);
    }
    body.replaceChildren(...nodes);
  };

  // Arrow keys move between rows; Enter opens one.
  body.addEventListener("keydown", (e) => {
    if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(e.key)) return;
    e.preventDefault();
    const current = document.activeElement?.closest?.(".row");
    let index = current ? Number(current.getAttribute("aria-rowindex")) - 2 : -1;
    index = e.key === "ArrowDown" ? index + 1 : e.key === "ArrowUp" ? index - 1 : e.key === "Home" ? 0 : rows.length - 1;
    index = Math.max(0, Math.min(rows.length - 1, index));
    if (index * ROW < body.scrollTop || (index + 1) * ROW > body.scrollTop + body.clientHeight) {
      body.scrollTop = index * ROW - body.clientHeight / 2;
      drawRows();
    }
    body.querySelector(`.row[aria-rowindex="${index + 2}"]`)?.focus();
  });
  body.addEventListener("scroll", () => requestAnimationFrame(drawRows));
  search.addEventListener("input", () => { state.q = search.value; save(); compute(); drawRows(); });
  stageSelect.addEventListener("change", () => { state.stage = stageSelect.value; save(); compute(); drawRows(); });
  roleSelect.addEventListener("change", () => { state.role = roleSelect.value; save(); compute(); drawRows(); });

  main.replaceChildren(
    el("h1", { text: "Machines" }),
    el("div", { class: "toolbar" },
      el("label", { for: "q" }, "Search", search),
      el("label", { for: "stage" }, "Stage", stageSelect),
      el("label", { for: "role" }, "Role", roleSelect),
      count),
    table);
  fillStages();
  drawHead();
  compute();
  drawRows();
  let known = stages().length;
  return () => {
    if (stages().length !== known) { known = stages().length; fillStages(); }
    compute();
    drawRows();
  };
}

// ---- One machine ---------------------------------------------------------------------------

async function machinePage(name) {
  main.replaceChildren(el("h1", { text: name }), el("p", { text: "Loading…" }));
  const detail = await api(`/api/v1/machines/${encodeURIComponent(name)}`);
  // The server's events and the cluster's (its kubelet's CSRs, its Node), in time order.
  const events = [...detail.events, ...detail.cluster.map((e) => ({ ...e, cluster: true }))]
    .sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const draw = () => {
    const m = detail.machine;
    const failed = [...events].reverse().find(isError);
    const items = events.map((e, i) => {
      const gap = i > 0 ? Date.parse(e.time) - Date.parse(events[i - 1].time) : null;
      return el("li", { class: isError(e) || e.stage === "csr-denied" ? "bad" : null },
        el("strong", { text: e.stage }), e.status ? ` (HTTP ${e.status})` : "", e.cluster ? " (cluster)" : "",
        e.detail ? ` ${e.detail}` : "",
        el("div", { class: "when" }, el("time", { datetime: e.time, text: new Date(e.time).toLocaleString() }),
          gap !== null ? ` · +${duration(gap)}` : ""));
    });
    main.replaceChildren(
      el("p", {}, el("a", { href: "/ui/machines", text: "← Machines" })),
      el("h1", { text: m.name }),
      el("dl", { class: "facts" },
        el("dt", { text: "Role" }), el("dd", { text: m.role }),
        el("dt", { text: "MAC" }), el("dd", { class: "mono", text: m.mac }),
        el("dt", { text: "IP" }), el("dd", { class: "mono", text: m.ip }),
        el("dt", { text: "Stage" }), el("dd", { text: m.stage || "no contact yet" }),
        el("dt", { text: "Rendering" }), el("dd", { text: rendering(m) || "not known yet" }),
        el("dt", { text: "Node" }), el("dd", { text: m.ready === true ? "Ready" : m.ready === false ? "not Ready" : "no Node, or the API does not answer" }),
        m.drift ? [el("dt", { text: "Drift" }), el("dd", { class: "bad", text: m.drift })] : null,
        el("dt", { text: "Certificates" }), el("dd", { text: m.certificatesExpire ? `first expires ${expiry(m.certificatesExpire)} (${new Date(m.certificatesExpire).toLocaleString()})` : "none of its own" }),
        el("dt", { text: "Last error" }), el("dd", { class: failed ? "bad" : null, text: failed ? `${failed.stage}: ${failed.detail || "HTTP " + failed.status}` : "none" })),
      el("h2", { text: "Timeline" }),
      detail.clusterTrouble ? el("p", { class: "hint", text: `Without the cluster's CSRs and Node: ${detail.clusterTrouble}.` }) : null,
      events.length ? el("ol", { class: "timeline", "aria-label": "Timeline" }, items) : el("p", { text: "No event yet: the machine has not asked to boot." }),
      el("h2", { text: "Boot script" }),
      el("p", { class: "hint", text: "What /ipxe answers this machine, its token redacted." }),
      // Focusable: a keyboard scrolls it sideways.
      el("pre", { tabindex: "0", "aria-label": "Boot script" }, el("code", { text: detail.ipxe || "" })),
    );
  };
  draw();
  const onEvent = (e) => {
    if (e.detail.machine !== name) return;
    events.push(e.detail);
    if (isStage(e.detail)) {
      Object.assign(detail.machine, { stage: e.detail.stage, time: e.detail.time });
    }
    draw();
  };
  window.addEventListener("kindling-event", onEvent);
  return { cleanup: () => window.removeEventListener("kindling-event", onEvent) };
}

// ---- Certificates --------------------------------------------------------------------------

async function certificatesPage() {
  main.replaceChildren(el("h1", { text: "Certificates" }), el("p", { text: "Loading…" }));
  const list = await api("/api/v1/certificates");
  const now = Date.now();
  const rows = list.certificates.map((c) => {
    const days = Math.floor((Date.parse(c.notAfter) - now) / 86400000);
    const bad = !c.bootstrapOnly && days < 30;
    return el("tr", { class: bad ? "bad" : null },
      el("td", {}, el("time", { datetime: c.notAfter, text: new Date(c.notAfter).toLocaleDateString() })),
      el("td", { text: c.bootstrapOnly ? `${days}d (bootstrap only)` : days < 0 ? "expired" : `${days}d` }),
      el("td", { text: c.kind }),
      el("td", { class: "mono", text: c.source }),
      el("td", { text: c.subject }),
      el("td", {}, c.machine ? el("a", { href: `/ui/machines/${encodeURIComponent(c.machine)}`, text: c.machine }) : ""));
  });
  main.replaceChildren(
    el("h1", { text: "Certificates" }),
    el("p", { class: "hint", text: `Soonest expiry first, as read ${age(list.readAt)}.${list.apiTrouble ? " The kubelets' certificates are missing: " + list.apiTrouble + "." : ""}` }),
    el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Certificates" },
      el("table", { class: "plain" },
        el("thead", {}, el("tr", {}, ["Not after", "Left", "Kind", "Where", "Subject", "Machine"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, rows))),
  );
}

// ---- Doctor --------------------------------------------------------------------------------

const AREAS = [["description", "Cluster description"], ["dns", "DNS"], ["load-balancer", "Load balancer"],
  ["provisioning", "Provisioning"], ["certificates", "Certificates"]];
const SEVERITY = ["error", "warning", "info", "ok"];

async function doctorPage() {
  main.replaceChildren(el("h1", { text: "Doctor" }), el("p", { text: "Loading…" }));
  const response = await fetch("/api/v1/doctor", { credentials: "same-origin", headers: { Accept: "application/json" } });
  let report = response.status === 404 ? null : response.ok ? await response.json() : null;
  const status = el("p", { id: "doctor-status", role: "status", "aria-live": "polite" });
  const button = el("button", { type: "button", class: "primary", text: "Run doctor again" });
  const body = el("div");
  const draw = () => {
    if (!report) {
      status.textContent = "Doctor has not run yet.";
      body.replaceChildren();
      return;
    }
    status.textContent = `${report.errors} errors, ${report.warnings} warnings; run by ${report.by} ${age(report.ranAt)}.`;
    body.replaceChildren(...AREAS.map(([area, title]) => {
      const found = report.findings.filter((f) => f.area === area)
        .sort((a, b) => SEVERITY.indexOf(a.severity) - SEVERITY.indexOf(b.severity));
      if (!found.length) return null;
      return el("section", { "aria-label": title },
        el("h2", { text: title }),
        el("ul", { class: "findings" }, found.map((f) => el("li", { class: f.severity },
          el("span", { class: "severity", text: f.severity }), " ",
          el("strong", { text: f.subject }), `: ${f.what}`,
          f.why ? el("div", { class: "why", text: `Why it matters: ${f.why}` }) : null,
          f.fix ? el("div", { class: "fix", text: `Fix: ${f.fix}` }) : null))));
    }));
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    status.textContent = "Doctor is running…";
    try {
      const ran = await fetch("/api/v1/doctor", { method: "POST", credentials: "same-origin", headers: { "X-Kindling-CSRF": csrf, Accept: "application/json" } });
      if (!ran.ok) throw new Error(`HTTP ${ran.status}: ${await ran.text()}`);
      report = await ran.json();
      draw();
    } catch (e) {
      status.textContent = `Doctor could not run: ${e.message}`;
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  main.replaceChildren(el("h1", { text: "Doctor" }), el("div", { class: "toolbar" }, button), status, body);
  draw();
}

// ---- Pages ---------------------------------------------------------------------------------

let cleanup = null;

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  redraw = null;
  const path = location.pathname.replace(/\/+$/, "") || "/ui";
  for (const a of document.querySelectorAll("nav a")) {
    const here = a.getAttribute("href").replace(/\/+$/, "") === (path.startsWith("/ui/machines") ? "/ui/machines" : path);
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  try {
    await loaded;
    if (path === "/ui") { document.title = "Overview · kindling"; overview(); redraw = overview; }
    else if (path === "/ui/machines") { document.title = "Machines · kindling"; redraw = machinesPage(); }
    else if (path === "/ui/certificates") { document.title = "Certificates · kindling"; await certificatesPage(); }
    else if (path === "/ui/doctor") { document.title = "Doctor · kindling"; await doctorPage(); }
    else if (path.startsWith("/ui/machines/")) {
      const name = decodeURIComponent(path.slice("/ui/machines/".length));
      document.title = `${name} · kindling`;
      const page = await machinePage(name);
      cleanup = page.cleanup;
    } else {
      main.replaceChildren(el("h1", { text: "Not found" }), el("p", {}, "No such page. ", el("a", { href: "/ui/", text: "Overview" })));
    }
  } catch (e) {
    main.replaceChildren(el("h1", { text: "Something went wrong" }), el("p", { class: "error", role: "alert", text: e.message }));
  }
}

function go(url) {
  history.pushState(null, "", url);
  route().then(() => main.focus());
}

// Links inside the dashboard change the page without a reload.
document.addEventListener("click", (e) => {
  const a = e.target.closest?.("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui") || url.pathname.startsWith("/ui/static")) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", route);

// Logging out is an action: it carries the session's CSRF token.
document.getElementById("logout").addEventListener("submit", async (e) => {
  e.preventDefault();
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-Kindling-CSRF": csrf } });
  location.assign("/ui/login");
});

loaded = loadMachines();
loaded.then(follow, () => {});
route();
