"use strict";
// Every call carries the UI's header: with the session cookie, the API acts only on requests that
// have it (a cross-site form cannot set it).
const call = async (method, path, body) => {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: Object.assign({ "X-Causeway-UI": "1" }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (r.status === 401) { location.reload(); throw new Error("not logged in"); }
  const data = await r.json().catch(() => ({}));
  return { status: r.status, data };
};
const $ = (id) => document.getElementById(id);
const utc = (ms) => ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
const short = (name) => (name || "").split(".").pop();
const cell = (tr, text, cls) => { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); if (cls) td.className = cls; tr.appendChild(td); return td; };
const source = (l) => l.source ? `${l.source.topic}/${l.source.partition}@${l.source.offset}` : "-";
const say = (text, error) => { const m = $("message"); m.textContent = text; m.className = "message" + (error ? " error" : ""); };

let cursor = null, current = null;

async function counts() {
  const { data } = await call("GET", "/v1/dead-letters/counts");
  const box = $("counts"); box.replaceChildren();
  const classes = Object.entries(data.by_class || {}).sort();
  if (!classes.length) { const s = document.createElement("span"); s.className = "muted"; s.textContent = "Nothing parked."; box.appendChild(s); }
  for (const [cls, n] of classes) {
    const b = document.createElement("span"); b.className = "count"; b.dataset.class = cls;
    const strong = document.createElement("b"); strong.textContent = n; b.append(strong, cls);
    b.onclick = () => { $("filters").elements["class"].value = cls; list(false); };
    box.appendChild(b);
  }
}

async function list(more) {
  const f = new FormData($("filters")); const q = new URLSearchParams();
  for (const [k, v] of f) if (v) q.set(k, v);
  q.set("limit", "50"); if (more && cursor) q.set("cursor", cursor);
  const { status, data } = await call("GET", "/v1/dead-letters?" + q);
  if (status !== 200) { say(data.error || ("HTTP " + status), true); return; }
  const rows = $("rows"); if (!more) rows.replaceChildren();
  for (const l of data.letters) {
    const tr = document.createElement("tr"); tr.className = "letter"; tr.dataset.id = l.id; tr.dataset.key = l.key || "";
    cell(tr, utc(l.at), "time"); cell(tr, l.state, "state state-" + l.state); cell(tr, l.group); cell(tr, l.class);
    cell(tr, source(l)); cell(tr, l.key); cell(tr, l.reason, "reason").title = l.reason;
    tr.onclick = () => show(l.id);
    rows.appendChild(tr);
  }
  cursor = data.next || null;
  $("more").classList.toggle("hidden", !cursor);
  $("shown").textContent = rows.children.length + " shown";
}

// The latest letter asked for: an answer for an earlier one (slower) is dropped.
let showing = 0;

async function show(id) {
  const asked = ++showing;
  const { status, data } = await call("GET", "/v1/dead-letters/" + encodeURIComponent(id));
  if (asked !== showing) return;
  if (status !== 200) { say(data.error || ("HTTP " + status), true); return; }
  current = data.letter;
  const l = data.letter, r = data.record || {};
  $("detail").classList.remove("hidden");
  $("detail-title").textContent = l.id;
  const dl = $("detail-fields"); dl.replaceChildren();
  const field = (k, v) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v == null ? "-" : String(v); dl.append(dt, dd); };
  field("state", l.state + (l.state_by ? ` (by ${l.state_by} at ${utc(l.state_at)}${l.note ? ": " + l.note : ""})` : ""));
  field("group", l.group); field("class", l.class); field("reason", l.reason); field("source", source(l)); field("key", l.key);
  field("dead-lettered", utc(l.at)); field("attempts", l.attempts); field("replays", l.replays + (l.replay_of ? " (a replay of " + l.replay_of + ")" : ""));
  if (l.behind != null) field("waits behind", "offset " + l.behind + " of its key (per-key order)");
  field("trace id", l.trace_id);
  const v = r.value || {};
  $("payload-note").textContent = v.decoded !== undefined ? `${v.schema} (${v.bytes} bytes)` : (v.error || r.error || "");
  $("payload").textContent = v.decoded !== undefined ? JSON.stringify(v.decoded, null, 2) : (v.hex || "");
  const hs = $("headers"); hs.replaceChildren();
  for (const h of r.headers || []) { const tr = document.createElement("tr"); cell(tr, h.name); cell(tr, h.value); hs.appendChild(tr); }
  for (const b of ["replay", "discard", "dry-run"]) $(b).disabled = l.state !== "parked";
}

async function act(what, dryRun) {
  if (!current) return;
  if (!dryRun && !confirm(`${what === "replay" ? "Replay" : "Discard"} ${current.id}?` + (what === "replay" ? ` It goes back to ${source(current)}.` : " It will never be replayed."))) return;
  const { status, data } = await call("POST", `/v1/dead-letters/${encodeURIComponent(current.id)}/${what}${dryRun ? "?dry_run=true" : ""}`);
  const lines = (data.letters || []).map((d) => `${d.letter_id}: ${d.outcome}${d.detail ? " (" + d.detail + ")" : ""}`);
  say(lines.join("; ") || data.error || ("HTTP " + status), status >= 300);
  if (!dryRun) { await Promise.all([list(false), counts()]); await show(current.id); }
}

async function history(aggregate, id) {
  const f = $("history-form"); f.elements.aggregate.value = aggregate; f.elements.id.value = id;
  const { status, data } = await call("GET", `/v1/history/${encodeURIComponent(aggregate)}/${encodeURIComponent(id)}`);
  const rows = $("events"); rows.replaceChildren(); $("history-letters").replaceChildren(); $("history-refused").replaceChildren();
  if (status !== 200) { say(data.error || ("HTTP " + status), true); return; }
  for (const e of data.events) {
    const c = e.command || {};
    const tr = document.createElement("tr"); tr.className = "event";
    cell(tr, e.version); cell(tr, (short(e.type) || e.error) + (e.replay_of ? " (replayed from " + e.replay_of + ")" : "")); cell(tr, utc(e.occurred_at), "time");
    cell(tr, c.type ? `${short(c.type)} ${e.command_id}` : (e.command_id || "")); cell(tr, c.outcome ? c.outcome + (c.new_version != null ? " v" + c.new_version : "") : "");
    cell(tr, e.trace_id);
    rows.appendChild(tr);
  }
  for (const c of (data.commands || []).filter((c) => c.outcome !== "accepted")) {
    const tr = document.createElement("tr"); tr.className = "refused";
    cell(tr, utc(c.processed_at), "time"); cell(tr, `${short(c.type)} ${c.command_id}`); cell(tr, c.outcome);
    cell(tr, c.rejection_code); cell(tr, c.reason); cell(tr, c.trace_id);
    $("history-refused").appendChild(tr);
  }
  for (const l of data.dead_letters || []) {
    const tr = document.createElement("tr"); cell(tr, utc(l.at)); cell(tr, l.id); cell(tr, l.state); cell(tr, l.class); cell(tr, l.reason);
    $("history-letters").appendChild(tr);
  }
  say(`${data.events.length} events of ${aggregate} ${id}` + (data.truncated ? " (the latest)" : ""));
}

function tab(name) {
  $("letters").classList.toggle("hidden", name !== "letters"); $("history").classList.toggle("hidden", name !== "history");
  $("tab-letters").classList.toggle("on", name === "letters"); $("tab-history").classList.toggle("on", name === "history");
}

$("filters").onsubmit = (e) => { e.preventDefault(); list(false); };
$("more").onclick = () => list(true);
$("replay").onclick = () => act("replay", false);
$("discard").onclick = () => act("discard", false);
$("dry-run").onclick = () => act("replay", true);
$("tab-letters").onclick = () => tab("letters");
$("tab-history").onclick = () => tab("history");
$("history-form").onsubmit = (e) => { e.preventDefault(); const f = e.target.elements; history(f.aggregate.value, f.id.value); };
$("to-history").onclick = () => {
  if (!current || !current.source) return;
  // <context>.<aggregate>.<kind>: the aggregate is the second segment.
  const parts = current.source.topic.split(".");
  tab("history"); history(parts.length >= 3 ? parts[parts.length - 2] : parts[0], current.key || "");
};
$("logout").onclick = async () => { await call("POST", "/v1/session/logout"); location.reload(); };
call("GET", "/v1/whoami").then(({ data }) => { $("who").textContent = data.operator ? "signed in as " + data.operator : ""; });
counts(); list(false);
