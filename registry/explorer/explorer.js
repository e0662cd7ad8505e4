// The directory explorer: lists, searches and shows the descriptions of the directory that
// serves this page, follows its events stream, and validates pasted descriptions. It uses the
// directory's public HTTP API only (WoT Discovery 7.3.2), plus POST /explorer/validate.
import { Api, ApiError, announce, el, fill, followEvents, localTime, relativeTime } from "./common.js";

const api = new Api("", "wot-agents-directory-token");
const PAGE_SIZE = 24;
const AGENT_TYPE = "lmos:Agent";
const $ = (id) => document.getElementById(id);

const state = {
  view: "agents",
  list: { kind: "agents", offset: 0, q: "", sort: "title", total: 0 },
  thingId: null,
  searchShown: null, // the last filter search, re-run when the directory changes
};

// --- describing a TD -------------------------------------------------------------------------

const asArray = (value) => (value === undefined || value === null ? [] : Array.isArray(value) ? value : [value]);
const AFFORDANCES = [["properties", "Properties"], ["actions", "Actions"], ["events", "Events"]];

function schemeOf(href, base) {
  try { return new URL(href, base || undefined).protocol.replace(/:$/, ""); } catch { return ""; }
}

function allForms(td) {
  const found = asArray(td.forms).map((form) => ({ kind: "thing", name: "", form }));
  for (const [kind] of AFFORDANCES) {
    for (const [name, affordance] of Object.entries(td[kind] || {})) {
      for (const form of asArray(affordance && affordance.forms)) found.push({ kind, name, form });
    }
  }
  return found;
}

function schemesOf(td) {
  const schemes = new Set();
  for (const { form } of allForms(td)) {
    const scheme = schemeOf(form && form.href, td.base);
    if (scheme) schemes.add(scheme);
  }
  return [...schemes].sort();
}

const isAgent = (td) => asArray(td["@type"]).includes(AGENT_TYPE);
const thingLink = (id) => `#/thing/${encodeURIComponent(id)}`;
const titleOf = (td) => td.title || td.id || "(untitled)";

function badges(values, cls = "") {
  return asArray(values).map((value) => el("span", { class: `badge ${cls || value}`.trim() }, value));
}

function card(td) {
  const registration = td.registration || {};
  const capabilities = asArray(td["lmos:capabilities"]).map((c) => c && (c.name || c.id)).filter(Boolean);
  const expires = registration.expires ? `expires ${relativeTime(registration.expires)}` : "no expiry";
  return el("article", { class: "card", "data-id": td.id },
    el("h3", {}, el("a", { href: thingLink(td.id) }, titleOf(td))),
    el("p", { class: "mono small muted id" }, td.id),
    td.description ? el("p", { class: "description" }, td.description) : null,
    capabilities.length ? el("p", { class: "small" }, el("strong", {}, "Capabilities: "), capabilities.join(", ")) : null,
    el("p", { class: "tags" },
      badges(schemesOf(td)),
      td["lmos:subset"] ? el("span", { class: "badge" }, `subset ${td["lmos:subset"]}`) : null,
      asArray(td["lmos:supportedTenants"]).map((t) => el("span", { class: "badge" }, `tenant ${t}`)),
      asArray(td["lmos:supportedChannels"]).map((c) => el("span", { class: "badge" }, `channel ${c}`))),
    el("p", { class: "small muted" },
      registration.modified ? `modified ${relativeTime(registration.modified)} · ` : "", expires));
}

// --- views -----------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  const section = view === "agents" || view === "things" ? "list" : view;
  for (const id of ["list", "search", "thing", "validate"]) $(`view-${id}`).hidden = id !== section;
  for (const link of document.querySelectorAll("header nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  const hash = location.hash || "#/agents";
  const [, view, ...rest] = hash.split("/");
  if (view === "thing" && rest.length) {
    show("thing");
    state.thingId = decodeURIComponent(rest.join("/"));
    loadThing(state.thingId);
  } else if (view === "search" || view === "validate") {
    show(view);
    document.title = `${view === "search" ? "Search" : "Validate"} · Directory explorer`;
  } else {
    const kind = view === "things" ? "things" : "agents";
    if (state.list.kind !== kind) state.list = { ...state.list, kind, offset: 0 };
    show(kind);
    loadList();
  }
}

// --- the list --------------------------------------------------------------------------------

function listFilter() {
  const base = state.list.kind === "agents" ? { type: AGENT_TYPE } : { not: { type: AGENT_TYPE } };
  return state.list.q ? { and: [base, { q: state.list.q }] } : base;
}

async function loadList({ fresh = [] } = {}) {
  const { kind, offset, sort } = state.list;
  $("list-title").textContent = kind === "agents" ? "Agents" : "Things (other than agents)";
  document.title = `${kind === "agents" ? "Agents" : "Things"} · Directory explorer`;
  $("list-error").textContent = "";
  try {
    const page = await api.postJSON("/search/filter", {
      filter: listFilter(), sort: [sort], limit: PAGE_SIZE, offset, format: "collection",
    });
    if (page.members.length === 0 && offset > 0 && page.total > 0) {
      state.list.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      return loadList({ fresh });
    }
    state.list.total = page.total;
    const cards = page.members.map((td) => {
      const node = card(td);
      if (fresh.includes(td.id)) node.classList.add("fresh");
      return node;
    });
    fill($("list-items"), cards.length ? cards : el("p", { class: "muted" },
      state.list.q ? "Nothing matches this filter." : `No ${kind} are registered yet.`));
    const last = Math.min(offset + page.members.length, page.total);
    $("list-count").textContent = `${page.total} ${kind === "agents" ? "agent" : "thing"}${page.total === 1 ? "" : "s"}`;
    $("list-page").textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
    $("list-prev").disabled = offset === 0;
    $("list-next").disabled = last >= page.total;
  } catch (error) {
    $("list-error").textContent = `Could not list the ${kind}: ${error.message}`;
  }
}

$("list-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  state.list.q = $("list-q").value.trim();
  state.list.sort = $("list-sort").value;
  state.list.offset = 0;
  loadList();
});
$("list-prev").addEventListener("click", () => {
  state.list.offset = Math.max(0, state.list.offset - PAGE_SIZE);
  loadList();
});
$("list-next").addEventListener("click", () => {
  state.list.offset += PAGE_SIZE;
  loadList();
});

// --- one description -------------------------------------------------------------------------

function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
    dl.append(el("dt", {}, name), el("dd", {}, value));
  }
  return dl;
}

const FORM_DETAILS = [
  "contentType", "htv:methodName", "subprotocol", "mqv:topic", "mqv:filter", "mqv:qos", "mqv:retain",
  "mqv:controlPacket", "security", "scopes", "response",
];

function formsTable(forms, base, caption) {
  const rows = forms
    .map((form) => ({ form, scheme: schemeOf(form.href, base) || "?" }))
    .sort((a, b) => a.scheme.localeCompare(b.scheme));
  return el("div", { class: "table-wrap" }, el("table", { class: "forms" },
    el("caption", { class: "visually-hidden" }, caption),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Binding"), el("th", { scope: "col" }, "Operations"),
      el("th", { scope: "col" }, "Target"), el("th", { scope: "col" }, "Details"))),
    el("tbody", {}, rows.map(({ form, scheme }) => el("tr", {},
      el("td", {}, el("span", { class: `badge ${scheme}` }, scheme)),
      el("td", {}, asArray(form.op).join(", ") || el("span", { class: "muted" }, "(default)")),
      el("td", { class: "mono small href" }, form.href),
      el("td", { class: "small" }, FORM_DETAILS.filter((key) => key in form).map((key) =>
        el("div", {}, el("span", { class: "muted" }, `${key}: `),
          typeof form[key] === "object" ? JSON.stringify(form[key]) : String(form[key])))))))));
}

function schemaDetails(label, schema) {
  if (!schema) return null;
  return el("details", { class: "schema" }, el("summary", {}, label),
    el("pre", {}, JSON.stringify(schema, null, 2)));
}

function affordanceCard(kind, name, affordance, base) {
  const flags = [];
  if (kind === "properties") {
    if (affordance.readOnly) flags.push("read-only");
    if (affordance.writeOnly) flags.push("write-only");
    if (affordance.observable) flags.push("observable");
    if (affordance.type) flags.push(affordance.type);
  }
  if (kind === "actions") {
    if (affordance.safe) flags.push("safe");
    if (affordance.idempotent) flags.push("idempotent");
    if (affordance.synchronous === false) flags.push("asynchronous");
  }
  return el("div", { class: "card affordance", id: `${kind}-${name}` },
    el("h4", {}, el("code", {}, name), affordance.title && affordance.title !== name ? ` · ${affordance.title}` : ""),
    affordance.description ? el("p", {}, affordance.description) : null,
    flags.length ? el("p", {}, badges(flags, "flag")) : null,
    kind === "actions" ? [schemaDetails("Input schema", affordance.input), schemaDetails("Output schema", affordance.output)] : null,
    kind === "events" ? [schemaDetails("Data schema", affordance.data), schemaDetails("Subscription", affordance.subscription)] : null,
    kind === "properties" ? schemaDetails("Schema", Object.fromEntries(Object.entries(affordance).filter(
      ([key]) => !["forms", "title", "description", "titles", "descriptions"].includes(key)))) : null,
    asArray(affordance.forms).length ? formsTable(asArray(affordance.forms), base, `Forms of ${name}`)
      : el("p", { class: "muted small" }, "No forms."));
}

function securitySection(td) {
  const definitions = td.securityDefinitions || {};
  const active = new Set(asArray(td.security));
  const rows = Object.entries(definitions).map(([name, definition]) => el("tr", {},
    el("td", {}, el("code", {}, name), active.has(name) ? el("span", { class: "badge" }, "applies") : null),
    el("td", {}, definition.scheme || "?"),
    el("td", { class: "small" }, Object.entries(definition).filter(([key]) => key !== "scheme").map(([key, value]) =>
      el("div", {}, el("span", { class: "muted" }, `${key}: `), typeof value === "object" ? JSON.stringify(value) : String(value))))));
  return [
    el("h3", { id: "security" }, "Security"),
    el("p", { class: "small" }, "Applied to every form unless a form says otherwise: ",
      active.size ? [...active].map((name) => el("code", {}, name)).reduce((acc, node) => acc.length ? [...acc, ", ", node] : [node], []) : "none"),
    rows.length ? el("div", { class: "table-wrap" }, el("table", {},
      el("caption", { class: "visually-hidden" }, "Security schemes"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Scheme"),
        el("th", { scope: "col" }, "Details"))),
      el("tbody", {}, rows))) : el("p", { class: "muted" }, "No security definitions."),
  ];
}

function capabilitiesSection(td) {
  const capabilities = asArray(td["lmos:capabilities"]).filter((c) => c && typeof c === "object");
  if (!capabilities.length) return null;
  return [
    el("h3", { id: "capabilities" }, `Capabilities (${capabilities.length})`),
    el("div", { class: "cards" }, capabilities.map((capability) => el("div", { class: "card capability" },
      el("h4", {}, capability.name || capability.id, capability.version ? el("span", { class: "muted small" }, ` v${capability.version}`) : ""),
      el("p", { class: "mono small muted" }, capability.id),
      capability.description ? el("p", {}, capability.description) : null,
      asArray(capability.examples).length ? [
        el("p", { class: "small" }, el("strong", {}, "Examples")),
        el("ul", { class: "examples" }, asArray(capability.examples).map((example) => el("li", {}, example))),
      ] : null))),
  ];
}

function renderThing(td) {
  const registration = td.registration || {};
  const metadata = td["lmos:metadata"] || {};
  const vendor = metadata["lmos:vendor"] || {};
  const base = td.base;
  document.title = `${titleOf(td)} · Directory explorer`;
  const sections = [
    el("h2", { id: "thing-title" }, titleOf(td), isAgent(td) ? el("span", { class: "badge" }, "agent") : null),
    td.description ? el("p", { class: "lead" }, td.description) : null,
    facts([
      ["Id", el("code", {}, td.id)],
      ["Type", asArray(td["@type"]).join(", ")],
      ["Version", td.version && (td.version.instance || JSON.stringify(td.version))],
      ["Vendor", vendor["lmos:name"] ? (vendor["lmos:url"]
        ? el("a", { href: vendor["lmos:url"], rel: "noopener noreferrer" }, vendor["lmos:name"]) : vendor["lmos:name"]) : null],
      ["Tenants", asArray(td["lmos:supportedTenants"]).join(", ")],
      ["Channels", asArray(td["lmos:supportedChannels"]).join(", ")],
      ["Subset", td["lmos:subset"]],
      ["Bindings", badges(schemesOf(td))],
      ["Base", base ? el("code", {}, base) : null],
    ]),
    el("h3", { id: "registration" }, "Registration"),
    facts([
      ["Created", registration.created ? `${localTime(registration.created)} (${relativeTime(registration.created)})` : null],
      ["Modified", registration.modified ? `${localTime(registration.modified)} (${relativeTime(registration.modified)})` : null],
      ["Expires", registration.expires ? `${localTime(registration.expires)} (${relativeTime(registration.expires)})` : "never"],
      ["TTL", registration.ttl !== undefined ? `${registration.ttl} s` : null],
      ["Retrieved", registration.retrieved ? localTime(registration.retrieved) : null],
    ]),
    capabilitiesSection(td),
  ];
  for (const [kind, label] of AFFORDANCES) {
    const entries = Object.entries(td[kind] || {});
    if (!entries.length) continue;
    sections.push(el("h3", { id: kind }, `${label} (${entries.length})`),
      entries.map(([name, affordance]) => affordanceCard(kind, name, affordance || {}, base)));
  }
  if (asArray(td.forms).length) sections.push(el("h3", {}, "Thing-level forms"), formsTable(asArray(td.forms), base, "Thing-level forms"));
  sections.push(securitySection(td));
  if (asArray(td.links).length) {
    sections.push(el("h3", {}, "Links"), el("ul", {}, asArray(td.links).map((link) =>
      el("li", {}, link.rel ? `${link.rel}: ` : "", el("code", {}, link.href)))));
  }
  const raw = JSON.stringify(td, null, 2);
  const copy = el("button", { type: "button", class: "secondary", onclick: async () => {
    try { await navigator.clipboard.writeText(raw); announce("JSON copied"); copy.textContent = "Copied"; }
    catch { announce("Copying is not allowed here: select the text instead"); }
  } }, "Copy JSON");
  const download = el("a", { class: "button secondary", download: `${(td.title || "thing").replace(/[^\w.-]+/g, "_")}.td.json`,
    href: URL.createObjectURL(new Blob([raw], { type: "application/td+json" })) }, "Download");
  sections.push(el("h3", { id: "raw" }, "Raw JSON"),
    el("details", { class: "raw" }, el("summary", {}, "Show the description as stored"),
      el("p", { class: "row" }, copy, download), el("pre", { tabindex: "0" }, raw)));
  fill($("thing"), sections);
}

async function loadThing(id) {
  $("thing-error").textContent = "";
  $("thing-back").href = state.list.kind === "things" ? "#/things" : "#/agents";
  try {
    const td = await api.json(`/things/${encodeURIComponent(id)}`, { accept: "application/td+json" });
    if (state.thingId === id) renderThing(td);
  } catch (error) {
    fill($("thing"));
    $("thing-error").textContent = error instanceof ApiError && error.status === 404
      ? `No description with the id ${id} is registered (it may have expired or been removed).`
      : `Could not load ${id}: ${error.message}`;
  }
}

// --- search ----------------------------------------------------------------------------------

const SPARQL_EXAMPLES = [
  ["Agents and their titles", `PREFIX td: <https://www.w3.org/2019/wot/td#>
# The LMOS context's IRI ends in neither / nor #, so JSON-LD keeps lmos: terms as the IRIs <lmos:...>
SELECT ?agent ?title WHERE {
  ?agent a <lmos:Agent> ; td:title ?title .
} ORDER BY ?title`],
  ["Capabilities of every agent", `PREFIX td: <https://www.w3.org/2019/wot/td#>
SELECT ?title ?capability ?example WHERE {
  ?agent a <lmos:Agent> ; td:title ?title ; <lmos:capabilities> ?c .
  ?c td:name ?capability .
  OPTIONAL { ?c td:examples ?example }
} ORDER BY ?title ?capability`],
  ["Agents of a tenant (acme)", `PREFIX td: <https://www.w3.org/2019/wot/td#>
SELECT ?agent ?title ?subset WHERE {
  ?agent a <lmos:Agent> ; td:title ?title ; <lmos:supportedTenants> "acme" .
  OPTIONAL { ?agent <lmos:subset> ?subset }
} ORDER BY ?title`],
  ["Things with an action named chat", `PREFIX td: <https://www.w3.org/2019/wot/td#>
SELECT ?thing ?title WHERE {
  ?thing td:title ?title ; td:hasActionAffordance ?action .
  ?action td:name "chat" .
}`],
  ["Forms per protocol", `PREFIX td: <https://www.w3.org/2019/wot/td#>
PREFIX hctl: <https://www.w3.org/2019/wot/hypermedia#>
SELECT ?title ?target WHERE {
  ?thing td:title ?title ; td:hasActionAffordance/td:hasForm/hctl:hasTarget ?target .
} ORDER BY ?title LIMIT 50`],
  ["How many descriptions?", `SELECT (COUNT(DISTINCT ?g) AS ?descriptions) WHERE { GRAPH ?g { ?s ?p ?o } }`],
  ["Is there an MQTT agent?", `PREFIX td: <https://www.w3.org/2019/wot/td#>
PREFIX hctl: <https://www.w3.org/2019/wot/hypermedia#>
ASK { ?thing td:hasActionAffordance/td:hasForm/hctl:hasTarget ?target .
      FILTER(STRSTARTS(STR(?target), "mqtt")) }`],
];

function selectTab(name) {
  for (const tab of ["filter", "jsonpath", "sparql"]) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
}

function setupTabs() {
  const tabs = ["filter", "jsonpath", "sparql"];
  for (const name of tabs) {
    const tab = $(`tab-${name}`);
    tab.addEventListener("click", () => selectTab(name));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(name) + step + tabs.length) % tabs.length];
      selectTab(next);
      $(`tab-${next}`).focus();
    });
  }
}

function searchFailed(error) {
  fill($("search-results"));
  $("search-error").textContent = `The search failed: ${error.message}`;
}

async function runFilter() {
  const params = new URLSearchParams();
  for (const input of $("filter-form").querySelectorAll("input")) {
    const values = input.name === "q" || input.name === "title" ? [input.value.trim()]
      : input.value.split(",").map((v) => v.trim());
    for (const value of values) if (value) params.append(input.name, value);
  }
  params.set("sort", "title");
  const query = `/search/filter?${params}`;
  $("filter-url").textContent = `GET ${decodeURIComponent(query)}`;
  $("search-error").textContent = "";
  state.searchShown = runFilter;
  try {
    const page = await api.json(query, { accept: "application/ld+json" });
    fill($("search-results"),
      el("p", { class: "muted", id: "search-count" }, `${page.total} description${page.total === 1 ? "" : "s"} found`),
      el("div", { class: "cards" }, page.members.map(card)));
  } catch (error) { searchFailed(error); }
}

async function runJsonPath() {
  $("search-error").textContent = "";
  state.searchShown = null;
  try {
    const values = await api.json(`/search/jsonpath?${new URLSearchParams({ query: $("jsonpath").value })}`);
    fill($("search-results"), el("p", { class: "muted" }, `${values.length} value${values.length === 1 ? "" : "s"}`),
      el("pre", { tabindex: "0" }, JSON.stringify(values, null, 2)));
  } catch (error) { searchFailed(error); }
}

function rdfTerm(term) {
  if (!term) return "";
  if (term.type === "uri") {
    return el("a", { href: thingLink(term.value), class: "mono small", title: "Open in the explorer if it is a description's id" }, term.value);
  }
  return term.value;
}

async function runSparql() {
  $("search-error").textContent = "";
  state.searchShown = null;
  try {
    const response = await api.fetch("/search/sparql", {
      method: "POST", body: $("sparql").value, headers: { "Content-Type": "application/sparql-query" },
      accept: "application/sparql-results+json, application/ld+json;q=0.9",
    });
    const result = await response.json();
    if (typeof result.boolean === "boolean") {
      fill($("search-results"), el("p", { class: "ok" }, `ASK: ${result.boolean ? "yes" : "no"}`));
    } else if (result.head && result.results) {
      const vars = result.head.vars || [];
      const rows = result.results.bindings || [];
      fill($("search-results"), el("p", { class: "muted" }, `${rows.length} row${rows.length === 1 ? "" : "s"}`),
        el("div", { class: "table-wrap" }, el("table", { class: "sparql" },
          el("thead", {}, el("tr", {}, vars.map((v) => el("th", { scope: "col" }, `?${v}`)))),
          el("tbody", {}, rows.map((row) => el("tr", {}, vars.map((v) => el("td", {}, rdfTerm(row[v])))))))));
    } else {
      fill($("search-results"), el("pre", { tabindex: "0" }, JSON.stringify(result, null, 2)));
    }
  } catch (error) { searchFailed(error); }
}

function setupSearch() {
  setupTabs();
  $("filter-form").addEventListener("submit", (event) => { event.preventDefault(); runFilter(); });
  $("filter-form").addEventListener("reset", () => { fill($("search-results")); $("filter-url").textContent = ""; });
  $("jsonpath-form").addEventListener("submit", (event) => { event.preventDefault(); runJsonPath(); });
  for (const button of document.querySelectorAll("[data-jsonpath]")) {
    button.addEventListener("click", () => { $("jsonpath").value = button.dataset.jsonpath; runJsonPath(); });
  }
  const examples = $("sparql-example");
  SPARQL_EXAMPLES.forEach(([label], index) => examples.append(el("option", { value: String(index) }, label)));
  examples.addEventListener("change", () => { $("sparql").value = SPARQL_EXAMPLES[Number(examples.value)][1]; });
  $("sparql").value = SPARQL_EXAMPLES[0][1];
  $("sparql-form").addEventListener("submit", (event) => { event.preventDefault(); runSparql(); });
}

// --- validate --------------------------------------------------------------------------------

const EXAMPLE_TD = {
  "@context": ["https://www.w3.org/2022/wot/td/v1.1", { lmos: "https://eclipse.dev/lmos/protocol/v1" }],
  "@type": "lmos:Agent",
  id: "urn:example:echo",
  title: "Echo",
  description: "Repeats what it is told.",
  securityDefinitions: { nosec: { scheme: "nosec" } },
  security: "nosec",
  "lmos:capabilities": [{ id: "urn:example:echo:repeat", name: "Repeat", examples: ["say it again"] }],
  actions: {
    chat: {
      input: { type: "object" },
      forms: [{ href: "http://127.0.0.1:8080/echo/actions/chat", "htv:methodName": "POST" }],
    },
  },
};

function updateGutter(bad = new Set()) {
  const lines = $("td-text").value.split("\n").length;
  const gutter = $("td-gutter");
  gutter.replaceChildren();
  for (let line = 1; line <= lines; line++) {
    gutter.append(bad.has(line) ? el("span", { class: "bad" }, String(line)) : String(line), line < lines ? "\n" : "");
  }
  gutter.scrollTop = $("td-text").scrollTop;
}

function goToLine(line, column) {
  const textarea = $("td-text");
  const lines = textarea.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || "").length;
  textarea.focus();
  textarea.setSelectionRange(start + Math.max(0, column - 1), end);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 20;
  textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

async function validateText() {
  const text = $("td-text").value;
  const result = $("validate-result");
  if (!text.trim()) {
    fill(result, el("p", { class: "error", role: "alert" }, "Paste a description or choose a file first."));
    return;
  }
  try {
    await api.json("/explorer/validate", { method: "POST", body: text, headers: { "Content-Type": "application/json" } });
    updateGutter();
    fill(result, el("p", { class: "ok", role: "status" }, "Valid: this description can be registered."));
  } catch (error) {
    const problems = [...((error.problem && error.problem.validationErrors) || [])]
      .sort((a, b) => a.line - b.line || a.column - b.column); // in reading order
    if (!problems.length) {
      fill(result, el("p", { class: "error", role: "alert" }, `Validation failed: ${error.message}`));
      return;
    }
    updateGutter(new Set(problems.map((p) => p.line)));
    fill(result,
      el("p", { class: "error", role: "alert", id: "problem-count" },
        `${problems.length} problem${problems.length === 1 ? "" : "s"} found`),
      el("ol", { class: "problems" }, problems.map((problem) => el("li", { class: "problem" },
        el("button", { type: "button", class: "linkish", onclick: () => goToLine(problem.line, problem.column) },
          `line ${problem.line}, column ${problem.column}`),
        " ", el("code", {}, problem.pointer || "/"), ": ", problem.description))));
  }
}

function setupValidate() {
  const textarea = $("td-text");
  textarea.addEventListener("input", () => updateGutter());
  textarea.addEventListener("scroll", () => { $("td-gutter").scrollTop = textarea.scrollTop; });
  $("td-file").addEventListener("change", async () => {
    const file = $("td-file").files[0];
    if (!file) return;
    textarea.value = await file.text();
    updateGutter();
    validateText();
  });
  textarea.addEventListener("dragover", (event) => event.preventDefault());
  textarea.addEventListener("drop", async (event) => {
    const file = event.dataTransfer.files[0];
    if (!file) return;
    event.preventDefault();
    textarea.value = await file.text();
    updateGutter();
    validateText();
  });
  $("td-example").addEventListener("click", () => {
    textarea.value = JSON.stringify(EXAMPLE_TD, null, 2);
    updateGutter();
    fill($("validate-result"));
  });
  $("validate-form").addEventListener("submit", (event) => { event.preventDefault(); validateText(); });
  updateGutter();
}

// --- live updates ----------------------------------------------------------------------------

const CHANGES = { thing_created: "registered", thing_updated: "updated", thing_deleted: "removed" };
let pending = new Set();
let fresh = new Set();
let timer = null;

function onChange(event) {
  if (!(event.event in CHANGES)) return;
  let data = {};
  try { data = JSON.parse(event.data); } catch { return; }
  const id = data.id;
  // With diff=true an update carries what changed: only "registration" is a renewal (an agent
  // keeping its ttl alive), shown quietly; anything else is news.
  const renewal = event.event === "thing_updated" && Object.keys(data).every((k) => k === "id" || k === "registration");
  if (!renewal) announce(`${id} ${CHANGES[event.event]}`);
  if (!renewal) fresh.add(id);
  pending.add(id);
  clearTimeout(timer);
  timer = setTimeout(() => {
    const changed = [...pending];
    const news = [...fresh];
    pending = new Set();
    fresh = new Set();
    if (state.view === "agents" || state.view === "things") loadList({ fresh: news });
    else if (state.view === "search" && state.searchShown) state.searchShown();
    else if (state.view === "thing" && changed.includes(state.thingId)) loadThing(state.thingId);
  }, 250);
}

let events = null;
function startEvents() {
  if (events) events.close();
  const live = $("live");
  events = followEvents(api, "/events?diff=true", {
    onEvent: onChange,
    onState: (now) => {
      live.dataset.state = now;
      $("live-text").textContent = now === "live" ? "live: updates as agents come and go" : "events lost, reconnecting…";
    },
  });
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.token = $("token").value.trim();
  announce(api.token ? "Token set" : "Token cleared");
  startEvents();
  route();
});

setupSearch();
setupValidate();
window.addEventListener("hashchange", route);
route();
startEvents();
