// The runtime's chat page: LMOS turns through the runtime's own API, streamed replies (SSE on
// the chat endpoint), and for each turn the agent that answered and why. Conversations are
// listed and read back from the runtime's conversation store.
import { Api, ApiError, announce, el, fill, localTime, readEvents } from "./common.js";

const api = new Api("");
const PREFIX = "/apis/v1";
const SAVED = "wot-agents-chat";
const $ = (id) => document.getElementById(id);

let config = { tenants: {}, subsets: ["stable"], defaultSubset: "stable", router: "", explorer: null };
const names = new Map(); // agent id -> title, from the candidates lists
let conversation = { id: "", messages: [] };
let sending = false;

// --- small things ----------------------------------------------------------------------------

function newId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes); // works on plain http too (crypto.randomUUID does not)
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function saved() {
  try { return JSON.parse(localStorage.getItem(SAVED)) || {}; } catch { return {}; }
}

function save(changes) {
  localStorage.setItem(SAVED, JSON.stringify({ ...saved(), ...changes }));
}

const tenant = () => $("tenant").value.trim();
const channel = () => $("channel").value.trim();
const explorer = () => ($("explorer").value.trim() || config.explorer || "").replace(/\/$/, "");

function agentLink(agent) {
  const name = agent.name || names.get(agent.id) || agent.id;
  const base = explorer();
  if (!base || !agent.id) return el("strong", {}, name);
  return el("a", { href: `${base}#/thing/${encodeURIComponent(agent.id)}`, class: "agent", target: "_blank",
    rel: "noopener", title: "Open this agent's description in the directory explorer" }, name);
}

// --- settings --------------------------------------------------------------------------------

function fillChoices() {
  fill($("tenants"), Object.keys(config.tenants).map((t) => el("option", { value: t })));
  fill($("channels"), (config.tenants[tenant()] || []).map((c) => el("option", { value: c })));
  const subset = $("subset");
  const current = subset.value;
  fill(subset, el("option", { value: "" }, `Automatic (rollout, else ${config.defaultSubset})`),
    config.subsets.map((s) => el("option", { value: s }, s)));
  subset.value = [...subset.options].some((o) => o.value === current) ? current : "";
}

async function loadCandidates() {
  const candidates = $("candidates");
  if (!tenant() || !channel()) {
    candidates.textContent = "Choose a tenant and a channel.";
    return;
  }
  const query = new URLSearchParams({ tenantId: tenant(), channelId: channel() });
  if ($("subset").value) query.set("subset", $("subset").value);
  try {
    const found = await api.json(`${PREFIX}/agents?${query}`);
    for (const agent of found.agents) names.set(agent.id, agent.name);
    const explicit = $("explicit");
    const chosen = explicit.value;
    fill(explicit, el("option", { value: "" }, "Let the router choose"),
      found.agents.map((agent) => el("option", { value: agent.id }, agent.name)));
    explicit.value = found.agents.some((a) => a.id === chosen) ? chosen : "";
    fill(candidates, found.agents.length
      ? [`${found.agents.length} agent${found.agents.length === 1 ? "" : "s"} in subset ${found.subset}: `,
        found.agents.map((agent, i) => [i ? ", " : "", agentLink(agent)])]
      : `No agent serves ${tenant()} / ${channel()} in subset ${found.subset}.`);
  } catch (error) {
    candidates.textContent = `Could not list the agents: ${error.message}`;
  }
}

function settingsChanged() {
  save({ tenant: tenant(), channel: channel(), subset: $("subset").value, explorer: $("explorer").value.trim() });
  fillChoices();
  updateExplorerLink();
  loadCandidates();
  renderConversations();
}

function updateExplorerLink() {
  const link = $("explorer-link");
  link.hidden = !explorer();
  if (explorer()) link.href = explorer();
}

// --- the transcript --------------------------------------------------------------------------

function userItem(text) {
  return el("li", { class: "turn user" }, el("p", { class: "who" }, "You"), el("p", { class: "text" }, text));
}

function assistantItem() {
  const text = el("p", { class: "text" });
  const meta = el("div", { class: "meta small" });
  const item = el("li", { class: "turn assistant", "aria-busy": "true" },
    el("p", { class: "who" }, "Agent"), text, meta);
  return { item, text, meta };
}

function describeRouting(meta, reply) {
  const routing = reply.routing || {};
  const agent = reply.agent || {};
  const runnerUps = (routing.ranking || []).filter((r) => r.agentId !== agent.id).slice(0, 3);
  fill(meta,
    el("p", { class: "answered" }, "Answered by ", agentLink(agent),
      routing.method ? [" · ", el("span", { class: "method" }, routing.method)] : "",
      typeof routing.score === "number" ? [" · score ", el("span", { class: "score" }, routing.score.toFixed(2))] : "",
      routing.subset ? ` · subset ${routing.subset}` : ""),
    runnerUps.length ? el("p", { class: "runner-ups" }, "Runner-ups: ", runnerUps.map((r, i) =>
      [i ? ", " : "", agentLink({ id: r.agentId }), ` ${r.score.toFixed(2)}`])) : null,
    routing.reason ? el("details", {}, el("summary", {}, "Why this agent"), el("p", {}, routing.reason)) : null);
}

function scrollDown() {
  const transcript = $("transcript");
  transcript.lastElementChild?.scrollIntoView({ block: "end" });
}

// --- sending a turn --------------------------------------------------------------------------

async function send(text) {
  if (sending || !text.trim()) return;
  if (!tenant() || !channel()) {
    $("chat-error").textContent = "Choose a tenant and a channel first.";
    return;
  }
  sending = true;
  $("send").disabled = true;
  $("chat-error").textContent = "";
  if (!conversation.id) startConversation();
  const transcript = $("transcript");
  transcript.append(userItem(text));
  const answer = assistantItem();
  answer.text.textContent = "…";
  transcript.append(answer.item);
  scrollDown();
  const messages = [...conversation.messages, { role: "user", format: "text", content: text }];
  const body = {
    inputContext: { messages, ...($("explicit").value ? { explicitAgent: $("explicit").value } : {}) },
    systemContext: { channelId: channel() },
    userContext: { userId: "chat-page" },
  };
  const headers = { "Content-Type": "application/json", "x-turn-id": newId("turn-") };
  if ($("subset").value) headers["x-subset"] = $("subset").value;
  let reply = null;
  let streamed = "";
  try {
    const response = await api.fetch(
      `${PREFIX}/${encodeURIComponent(tenant())}/chat/${encodeURIComponent(conversation.id)}/message`,
      { method: "POST", body: JSON.stringify(body), headers, accept: "text/event-stream, application/json;q=0.5" });
    if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      await readEvents(response, (event) => {
        const data = JSON.parse(event.data);
        if (event.event === "delta") {
          streamed += data.delta;
          answer.text.textContent = streamed;
          scrollDown();
        } else if (event.event === "reply") {
          reply = data;
        } else if (event.event === "error") {
          throw new ApiError(data.message, 502, data);
        }
      });
    } else {
      reply = await response.json();
    }
    if (!reply) throw new ApiError("the stream ended without a reply", 502, {});
    answer.text.textContent = reply.content;
    describeRouting(answer.meta, reply);
    answer.item.querySelector(".who").textContent = (reply.agent && reply.agent.name) || "Agent";
    conversation.messages = [...messages, { role: "assistant", format: "text", content: reply.content }];
    renderConversations();
    announce(`${(reply.agent && reply.agent.name) || "The agent"} answered`);
  } catch (error) {
    answer.item.classList.add("failed");
    answer.text.textContent = streamed || "No answer.";
    fill(answer.meta, el("p", { class: "error" },
      error.problem && error.problem.errorCode ? `${error.problem.errorCode}: ${error.message}` : error.message));
  } finally {
    answer.item.removeAttribute("aria-busy");
    sending = false;
    $("send").disabled = false;
    scrollDown();
  }
}

// --- conversations ---------------------------------------------------------------------------

async function renderConversations() {
  const list = $("conversations");
  if (!tenant()) {
    fill(list, el("li", { class: "muted small" }, "Choose a tenant."));
    return;
  }
  try {
    const query = new URLSearchParams({ tenantId: tenant(), limit: "30" });
    const found = await api.json(`/chat/conversations?${query}`);
    fill(list, found.conversations.length ? found.conversations.map((c) => el("li", {},
      el("button", { type: "button", class: "conversation",
        "aria-current": c.conversationId === conversation.id ? "true" : null, onclick: () => reopen(c.conversationId) },
        el("span", { class: "title" }, c.title || c.conversationId),
        el("span", { class: "small muted" }, `${c.turns} turn${c.turns === 1 ? "" : "s"} · ${localTime(c.updated)}`))))
      : el("li", { class: "muted small" }, "None yet for this tenant."));
  } catch (error) {
    fill(list, el("li", { class: "error small" }, `Could not list the conversations: ${error.message}`));
  }
}

function startConversation(id = newId("conv-")) {
  conversation = { id, messages: [] };
  fill($("transcript"));
  $("conversation-id").textContent = `Conversation ${id}`;
  const url = new URL(location.href);
  url.searchParams.set("conversation", id);
  history.replaceState(null, "", url);
  renderConversations();
}

async function reopen(id) {
  $("chat-error").textContent = "";
  try {
    const stored = await api.json(`${PREFIX}/${encodeURIComponent(tenant())}/chat/${encodeURIComponent(id)}`);
    startConversation(id);
    const messages = [];
    for (const turn of stored.turns) {
      $("transcript").append(userItem(turn.query));
      const answer = assistantItem();
      answer.item.removeAttribute("aria-busy");
      answer.text.textContent = turn.content;
      answer.item.querySelector(".who").textContent = turn.agent.name || "Agent";
      describeRouting(answer.meta, turn);
      answer.meta.append(el("p", { class: "muted" }, localTime(turn.time)));
      $("transcript").append(answer.item);
      messages.push({ role: "user", format: "text", content: turn.query },
        { role: "assistant", format: "text", content: turn.content });
    }
    conversation.messages = messages;
    announce(`Conversation reopened: ${stored.turns.length} turns`);
    scrollDown();
  } catch (error) {
    $("chat-error").textContent = error instanceof ApiError && error.status === 404
      ? "The runtime no longer keeps this conversation."
      : `Could not reopen the conversation: ${error.message}`;
  }
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  try {
    config = { ...config, ...(await api.json("/chat/config.json")) };
  } catch (error) {
    $("chat-error").textContent = `Could not read the page's settings: ${error.message}`;
  }
  const params = new URLSearchParams(location.search);
  const remembered = saved();
  const tenants = Object.keys(config.tenants);
  $("tenant").value = params.get("tenant") || remembered.tenant || tenants[0] || "";
  $("channel").value = params.get("channel") || remembered.channel || (config.tenants[$("tenant").value] || [])[0] || "";
  $("explorer").value = params.get("explorer") || remembered.explorer || "";
  $("explorer").placeholder = config.explorer || "http://127.0.0.1:8081/explorer";
  fillChoices();
  $("subset").value = params.get("subset") ?? remembered.subset ?? "";
  $("router-info").textContent = config.router ? `router: ${config.router}` : "";
  updateExplorerLink();
  for (const id of ["tenant", "channel", "subset", "explorer"]) $(id).addEventListener("change", settingsChanged);
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("new-conversation").addEventListener("click", () => { startConversation(); $("message").focus(); });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    $("message").value = "";
    send(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  await loadCandidates();
  if (params.get("conversation")) await reopen(params.get("conversation"));
  if (!conversation.id) startConversation();
}

start();
