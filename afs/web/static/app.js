// The scientists' page: the API's own endpoints, called with the user's token (kept in sessionStorage,
// sent as "Authorization: Bearer"). Everything the API returns is rendered as text (textContent), never
// as markup. Cutouts and the live stream are fetched with that header too, since an <img> or an
// EventSource cannot send it: cutouts become blob: URLs, the stream is read from the response body.

const TOKEN = "afs-token";
const CUTOUT_ROWS = 10; // cutouts cost quota: show them for the first few matches of a dry run
const KINDS = ["difference", "science", "template"];
const RECONNECT_MS = 5000;

const $ = (id) => document.getElementById(id);
const state = { me: null, filter: null, marks: new Map(), watching: null, dryRuns: 0 };

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail;
    super(typeof detail === "string" ? detail : `HTTP ${status}: ${JSON.stringify(detail)}`);
    this.status = status;
    this.problems = (body && body.problems) || [];
  }
}

function authorization() {
  return { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}` };
}

async function errorOf(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    body = { detail: `${response.status} ${response.statusText}` };
  }
  if (response.status === 401 && state.me) signOut(); // revoked while signed in
  return new ApiError(response.status, body);
}

async function api(method, path, body) {
  const headers = authorization();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

// -- rendering helpers: text only -------------------------------------------------------------------
function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function button(label, onClick, attributes = {}) {
  const node = el("button", label, { type: "button", ...attributes });
  node.addEventListener("click", onClick);
  return node;
}

function row(...cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.append(td);
  }
  return tr;
}

function figures(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([term, value]) => [el("dt", term), el("dd", value ?? "none")]));
}

const number = (value) => (value === null || value === undefined ? "none"
  : Number.isInteger(value) ? value.toLocaleString("en") : value.toLocaleString("en", { maximumFractionDigits: 2 }));
const micros = (value) => (value === null ? "none" : `${number(value)} µs`);
const percent = (rate) => `${(100 * rate).toFixed(2)} %`;
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
const filterPath = (id) => `/v1/filters/${encodeURIComponent(id)}`;

function say(region, message) {
  $(region).textContent = message;
}

// -- signing in -------------------------------------------------------------------------------------
async function signIn(token) {
  sessionStorage.setItem(TOKEN, token);
  try {
    state.me = await api("GET", "/v1/me");
  } catch (error) {
    sessionStorage.removeItem(TOKEN);
    say("sign-in-error", error.status === 401 ? "That token is invalid or revoked." : error.message);
    return;
  }
  $("who-name").textContent = `Signed in as ${state.me.name}${state.me.is_admin ? " (admin)" : ""}`;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("admin").hidden = !state.me.is_admin;
  renderGutter();
  await Promise.all([loadHelpers(), loadFilters(), loadUsage(), state.me.is_admin && loadAdmin()]);
}

function signOut() {
  stopWatching();
  sessionStorage.removeItem(TOKEN);
  window.location.reload();
}

// -- the helpers beside the editor ------------------------------------------------------------------
async function loadHelpers() {
  const members = await api("GET", "/v1/helpers");
  const modules = [...new Set(members.map((member) => member.module))];
  $("helpers").replaceChildren(...modules.map((module, index) => {
    const details = el("details");
    details.open = index === 0;
    const list = el("dl");
    for (const member of members.filter((m) => m.module === module)) {
      list.append(el("dt", member.signature), documentation(member.doc));
    }
    details.append(el("summary", module === "math" ? "import math" : `from ${module} import ...`), list);
    return details;
  }));
}

function documentation(doc) {
  // A docstring's paragraphs; indented ones (examples) keep their lines.
  const description = el("dd");
  for (const paragraph of doc.split(/\n\s*\n/)) {
    const indented = /^\s/m.test(paragraph);
    description.append(el(indented ? "pre" : "p", indented ? paragraph : paragraph.replace(/\s+/g, " ")));
  }
  return description;
}

// -- the editor: line numbers, problems on their lines ----------------------------------------------
function renderGutter() {
  const lines = $("source").value.split("\n").length;
  const numbers = [];
  for (let line = 1; line <= lines; line += 1) {
    const label = el("span", line);
    if (state.marks.has(line)) {
      label.className = "problem";
      label.title = state.marks.get(line);
    }
    numbers.push(label);
  }
  $("gutter").replaceChildren(...numbers);
  $("gutter").scrollTop = $("source").scrollTop;
}

function goToLine(line) {
  const source = $("source");
  const starts = source.value.split("\n").slice(0, line - 1).reduce((at, text) => at + text.length + 1, 0);
  source.focus();
  source.setSelectionRange(starts, starts + (source.value.split("\n")[line - 1] || "").length);
}

function showProblems(problems) {
  state.marks = new Map();
  $("problems").replaceChildren(...problems.map((problem) => {
    const item = el("li");
    if (problem.line) {
      const where = `Line ${problem.line}${problem.column ? `, column ${problem.column}` : ""}`;
      item.append(button(where, () => goToLine(problem.line)), `: ${problem.reason}`);
      state.marks.set(problem.line, [state.marks.get(problem.line), problem.reason].filter(Boolean).join("; "));
    } else {
      item.textContent = problem.reason;
    }
    return item;
  }));
  renderGutter();
}

function sourceBody() {
  return { source: $("source").value, name: $("filter-name").value.trim() || null };
}

async function editorAction(working, action) {
  const buttons = document.querySelectorAll(".actions button");
  const enabled = [...buttons].filter((b) => !b.disabled);
  enabled.forEach((b) => { b.disabled = true; });
  say("editor-status", working);
  try {
    say("editor-status", await action());
  } catch (error) {
    if (error.problems.length) showProblems(error.problems);
    say("editor-status", error.problems.length ? "The filter was refused: see the problems above." : error.message);
  } finally {
    enabled.forEach((b) => { b.disabled = false; });
    if (state.filter) updateActions(state.filter);
  }
}

function dryRun() {
  return editorAction("Running the filter on recent alerts...", async () => {
    const report = await api("POST", "/v1/dry-run", sourceBody());
    showProblems([]);
    showReport(report);
    return "Dry run done: nothing was stored.";
  });
}

function save() {
  return editorAction("Checking, dry-running and storing...", async () => {
    const uploaded = state.filter
      ? await api("PUT", filterPath(state.filter.id), sourceBody())
      : await api("POST", "/v1/filters", sourceBody());
    showProblems([]);
    showReport(uploaded.version.dry_run);
    await select(uploaded.filter);
    return `Saved version ${uploaded.version.version} of ${uploaded.filter.name} (${uploaded.filter.id}).`;
  });
}

function setActive(on) {
  return editorAction(on ? "Activating..." : "Deactivating...", async () => {
    const path = `${filterPath(state.filter.id)}/${on ? "activate" : "deactivate"}`;
    const changed = await api("POST", path, on ? {} : undefined);
    await select(changed);
    return on ? `Version ${changed.active_version} is active: the workers run it from their next reload.`
      : "Deactivated.";
  });
}

function updateActions(filter) {
  $("activate").disabled = false;
  $("deactivate").disabled = filter.active_version === null;
}

// -- dry-run results, with cutouts ------------------------------------------------------------------
async function cutout(diaSourceId, kind) {
  const response = await fetch(`/v1/alerts/${diaSourceId}/cutouts/${kind}?format=png`, { headers: authorization() });
  if (!response.ok) return el("span", (await errorOf(response)).message, { class: "error" });
  const url = URL.createObjectURL(await response.blob());
  const image = el("img", null, { src: url, alt: `${kind} cutout of ${diaSourceId}` });
  const release = () => URL.revokeObjectURL(url); // the decoded image stays on the page
  image.addEventListener("load", release, { once: true });
  image.addEventListener("error", release, { once: true });
  return image;
}

function showReport(report) {
  const run = ++state.dryRuns;
  $("dry-run-section").hidden = false;
  figures($("dry-run-report"), [
    ["Sample", `${number(report.sample_size)} ${report.sample} alerts`],
    ["Status", report.reason ? `${report.status}: ${report.reason}` : report.status],
    ["Matched", `${number(report.matched)} of ${number(report.alerts_seen)}`],
    ["Match rate", percent(report.match_rate)],
    ["Errors", number(report.errors)],
    ["Timeouts", number(report.timeouts)],
    ["Kills", number(report.kills)],
    ["CPU per alert (p50)", micros(report.cpu_per_alert_us.p50)],
    ["CPU per alert (p99)", micros(report.cpu_per_alert_us.p99)],
  ]);
  $("dry-run-errors").replaceChildren(...report.first_errors.map((error) => el("li", error)));
  const shown = report.sample_matches.slice(0, CUTOUT_ROWS);
  const archived = report.sample === "archived";
  say("matches-caption", !shown.length ? "No matches."
    : `Matched alerts: the first ${shown.length} of ${number(report.matched)}`
      + (archived ? "" : " (the sample is simulated, as nothing is archived yet: no cutouts)"));
  const cells = shown.map(() => KINDS.map(() => el("td")));
  $("matches").tBodies[0].replaceChildren(...shown.map((id, i) => {
    const tr = row(id);
    tr.append(...cells[i]);
    return tr;
  }));
  if (archived) fillCutouts(run, shown, cells);
}

async function fillCutouts(run, ids, cells) {
  for (const [i, id] of ids.entries()) { // one at a time: the per-second request quota
    for (const [k, kind] of KINDS.entries()) {
      if (run !== state.dryRuns) return; // a newer dry run replaced the table
      cells[i][k].append(await cutout(id, kind));
    }
  }
  await loadUsage();
}

// -- a filter: details, versions, stats -------------------------------------------------------------
async function openFilter(id, version) {
  const filter = await api("GET", filterPath(id));
  const stored = await api("GET", `${filterPath(id)}/versions/${version || filter.latest_version}`);
  $("source").value = stored.source;
  $("filter-name").value = stored.name;
  showProblems([]);
  await select(filter);
  say("editor-status", `Version ${stored.version} of ${filter.name} is in the editor.`);
}

async function select(filter) {
  const changed = !state.filter || state.filter.id !== filter.id;
  state.filter = filter;
  say("editing", `${filter.name} (${filter.id})`);
  updateActions(filter);
  if (changed) watch(filter.id);
  await Promise.all([loadDetails(), loadFilters()]);
}

function newFilter() {
  stopWatching();
  state.filter = null;
  $("source").value = "";
  $("filter-name").value = "";
  showProblems([]);
  say("editing", "a new filter");
  say("editor-status", "");
  $("activate").disabled = $("deactivate").disabled = true;
  $("details").hidden = $("live").hidden = true;
}

async function loadDetails() {
  const path = filterPath(state.filter.id);
  const [filter, stats, versions] = await Promise.all([api("GET", path), api("GET", `${path}/stats`),
    api("GET", `${path}/versions`)]);
  state.filter = filter;
  $("details").hidden = false;
  say("details-name", `${filter.name} (${filter.id})`);
  figures($("details-figures"), [
    ["Status", filter.status], ["Active version", filter.active_version], ["Latest version", filter.latest_version],
    ["Owner", filter.owner], ["Kafka topic", filter.topic], ["Description", filter.description || "none"],
  ]);
  const moderated = filter.moderation && filter.moderation.disabled;
  say("details-disabled", moderated ? `Disabled by ${filter.moderation.by}: ${filter.moderation.reason}`
    : filter.disabled ? `Disabled automatically: ${filter.disabled.reason}`
      + (filter.disabled.dia_source_id ? ` (diaSourceId ${filter.disabled.dia_source_id})` : "") : "");
  figures($("stats"), [
    ["Alerts seen", number(stats.alerts_seen)], ["Matched", number(stats.matched)],
    ["Delivered", number(stats.delivered)], ["Withheld by the per-visit cap", number(stats.withheld)],
    ["Errors", number(stats.errors)], ["Timeouts", number(stats.timeouts)], ["Kills", number(stats.kills)],
    ["CPU per alert", micros(stats.cpu_per_alert_us)],
    ["Last match", when(stats.last_match_at)],
  ]);
  $("versions").tBodies[0].replaceChildren(...versions.map((v) => row(
    v.version + (v.version === filter.active_version ? " (active)" : ""), when(v.created_at), v.created_by,
    v.dry_run ? percent(v.dry_run.match_rate) : "none",
    button("Edit", () => openFilter(filter.id, v.version), { "aria-label": `Edit version ${v.version}` }),
  )));
}

async function loadFilters() {
  const filters = await api("GET", "/v1/filters");
  $("filters").tBodies[0].replaceChildren(...filters.map((f) => row(
    f.name, f.id, f.owner, f.status, f.active_version,
    button("Open", () => openFilter(f.id), { "aria-label": `Open ${f.name}` }),
  )));
  if (state.me.is_admin) showAdminFilters(filters);
}

// -- live matches: the SSE stream, read with fetch so the token stays in a header ------------------
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = { type: "message", id: null, comment: null, data: [] };
      for (const line of buffer.slice(0, end).split("\n")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "") event.comment = text;
        else if (field === "data") event.data.push(text);
        else if (field === "event") event.type = text;
        else if (field === "id") event.id = text;
      }
      buffer = buffer.slice(end + 2);
      yield { ...event, data: event.data.join("\n") };
    }
  }
}

function stopWatching() {
  if (state.watching) state.watching.abort();
  state.watching = null;
}

async function watch(filterId) {
  stopWatching();
  const controller = new AbortController();
  state.watching = controller;
  $("live").hidden = false;
  $("live-matches").tBodies[0].replaceChildren();
  let lastEventId = null;
  while (!controller.signal.aborted) {
    try {
      say("live-status", "Connecting to the stream of matches...");
      const headers = { ...authorization(), Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId; // resume exactly where it stopped
      const response = await fetch(`${filterPath(filterId)}/stream`, { headers, signal: controller.signal });
      if (!response.ok) throw await errorOf(response);
      for await (const event of serverSentEvents(response.body)) {
        if (event.comment && event.comment.startsWith("subscribed")) {
          say("live-status", "Watching: matches appear below as the workers publish them.");
        } else if (event.type === "match") {
          lastEventId = event.id;
          showMatch(JSON.parse(event.data));
        }
      }
      say("live-status", `The stream closed; reconnecting in ${RECONNECT_MS / 1000} s...`);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error.status && error.status < 500) {
        say("live-status", `Cannot watch this filter: ${error.message}`);
        return;
      }
      say("live-status", `Disconnected (${error.message}); reconnecting in ${RECONNECT_MS / 1000} s...`);
    }
    await new Promise((resolve) => { setTimeout(resolve, RECONNECT_MS); });
  }
}

function showMatch(match) {
  const source = match.diaSource;
  const cell = el("td");
  cell.append(button("Show", async () => {
    cell.replaceChildren();
    for (const kind of KINDS) cell.append(await cutout(match.diaSourceId, kind));
  }, { "aria-label": `Show the cutouts of ${match.diaSourceId}` }));
  const tr = row(new Date().toLocaleTimeString(), match.diaSourceId, match.score, source.band,
    source.midpointMjdTai.toFixed(5), number(source.psfFlux));
  tr.append(cell);
  $("live-matches").tBodies[0].prepend(tr);
}

// -- quota usage ------------------------------------------------------------------------------------
async function loadUsage() {
  const usage = await api("GET", "/v1/me/usage");
  $("usage").tBodies[0].replaceChildren(...usage.quotas.map((q) => row(
    q.kind, q.key === null ? q.period : `${q.period} ${q.key}`, number(q.used), number(q.limit),
    number(q.remaining), when(q.resets_at),
  )));
}

// -- administration: users, their quotas, filters to moderate ---------------------------------------
async function loadAdmin() {
  const users = await api("GET", "/v1/users");
  $("admin-users").tBodies[0].replaceChildren(...users.map((u) => row(
    u.name, u.is_admin ? "yes" : "no", `${u.max_matches_per_visit}${u.cap_is_default ? " (default)" : ""}`,
    button("Quotas", () => editQuotas(u.name), { "aria-label": `Quotas of ${u.name}` }),
  )));
}

async function editQuotas(name) {
  const limits = await api("GET", `/v1/users/${encodeURIComponent(name)}/quotas`);
  const kinds = Object.keys(limits).filter((kind) => kind !== "overridden");
  say("quota-user", name);
  $("quota-fields").replaceChildren(...kinds.map((kind) => {
    const label = el("label", kind, { for: `quota-${kind}` });
    const input = el("input", null, { id: `quota-${kind}`, name: kind, type: "number", min: "0", step: "any" });
    if (limits.overridden.includes(kind)) input.value = limits[kind];
    else input.placeholder = `default: ${limits[kind]}`;
    const field = el("p");
    field.append(label, input);
    return field;
  }));
  $("quota-form").dataset.user = name;
  $("quota-form").hidden = false;
}

async function saveQuotas(event) {
  event.preventDefault();
  const form = $("quota-form");
  const body = Object.fromEntries([...form.querySelectorAll("input")].map(
    (input) => [input.name, input.value === "" ? null : Number(input.value)]));
  try {
    await api("PUT", `/v1/users/${encodeURIComponent(form.dataset.user)}/quotas`, body);
    say("admin-status", `Saved the quotas of ${form.dataset.user}.`);
    await editQuotas(form.dataset.user);
  } catch (error) {
    say("admin-status", error.message);
  }
}

function showAdminFilters(filters) {
  $("admin-filters").tBodies[0].replaceChildren(...filters.map((f) => {
    const reason = el("input", null, { type: "text", "aria-label": `Reason for ${f.name}`, maxlength: "2000" });
    const decide = (disabled) => moderate(f, disabled, reason.value.trim());
    const moderation = f.moderation
      ? `${f.moderation.disabled ? "disabled" : "enabled"} by ${f.moderation.by}: ${f.moderation.reason}` : "";
    const actions = el("span");
    actions.append(button("Disable", () => decide(true), { "aria-label": `Disable ${f.name}` }),
      button("Enable", () => decide(false), { "aria-label": `Enable ${f.name}` }));
    return row(f.name, f.id, f.owner, f.status, moderation, reason, actions);
  }));
}

async function moderate(filter, disabled, reason) {
  if (!reason) {
    say("admin-status", "Give a reason: the filter's owner sees it.");
    return;
  }
  try {
    await api("POST", `${filterPath(filter.id)}/moderation`, { disabled, reason });
    say("admin-status", `${disabled ? "Disabled" : "Enabled"} ${filter.name}.`);
    await loadFilters();
  } catch (error) {
    say("admin-status", error.message);
  }
}

// -- wiring -----------------------------------------------------------------------------------------
$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  say("sign-in-error", "");
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", signOut);
$("source").addEventListener("input", renderGutter);
$("source").addEventListener("scroll", () => { $("gutter").scrollTop = $("source").scrollTop; });
$("dry-run").addEventListener("click", dryRun);
$("save").addEventListener("click", save);
$("activate").addEventListener("click", () => setActive(true));
$("deactivate").addEventListener("click", () => setActive(false));
$("new-filter").addEventListener("click", newFilter);
$("refresh-details").addEventListener("click", loadDetails);
$("refresh-usage").addEventListener("click", loadUsage);
$("quota-form").addEventListener("submit", saveQuotas);
window.addEventListener("unhandledrejection", (event) => say("page-error", event.reason.message || event.reason));
if (sessionStorage.getItem(TOKEN)) signIn(sessionStorage.getItem(TOKEN));
