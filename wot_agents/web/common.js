// Helpers shared by wot-agents' pages: building DOM safely, calling the JSON APIs, reading
// Server-Sent Events (also from POST requests and with an Authorization header, which the
// browser's EventSource cannot send). Plain ES modules, no build step, no dependency.

/** An element: el("a", {href: "#", class: "x", onclick: f}, "text", child...). Text is never HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && !key.startsWith("aria-") && !key.startsWith("data-") && key !== "for") node[key] = value;
    else node.setAttribute(key === "for" ? "for" : key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace every child of ``node``. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) node.append(child);
  }
  return node;
}

/** An error from an API: ``status``, the problem document (RFC 7807 or LMOS) as ``problem``. */
export class ApiError extends Error {
  constructor(message, status, problem) {
    super(message);
    this.status = status;
    this.problem = problem || {};
  }
}

/** Read a failed response into an ApiError (problem+json ``detail``, LMOS ``message``, or text). */
export async function apiError(response) {
  const text = await response.text();
  let problem = {};
  try { problem = JSON.parse(text); } catch { problem = {}; }
  const message = problem.detail || problem.message || problem.error || problem.title || text ||
    `${response.status} ${response.statusText}`;
  return new ApiError(message, response.status, problem);
}

/** Calls one server's JSON API; an optional bearer token (kept for the tab) goes with each call. */
export class Api {
  constructor(base = "", tokenKey = null) {
    this.base = base.replace(/\/$/, "");
    this.tokenKey = tokenKey;
  }
  get token() { return this.tokenKey ? sessionStorage.getItem(this.tokenKey) || "" : ""; }
  set token(value) {
    if (!this.tokenKey) return;
    if (value) sessionStorage.setItem(this.tokenKey, value); else sessionStorage.removeItem(this.tokenKey);
  }
  headers(extra = {}) {
    const headers = { ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }
  async fetch(path, { method = "GET", body, headers = {}, accept = "application/json", signal } = {}) {
    const response = await fetch(this.base + path, {
      method, body, signal, headers: this.headers({ Accept: accept, ...headers }),
    });
    if (!response.ok) throw await apiError(response);
    return response;
  }
  async json(path, options = {}) {
    const response = await this.fetch(path, options);
    return response.status === 204 ? null : response.json();
  }
  async postJSON(path, value, options = {}) {
    return this.json(path, {
      ...options, method: "POST", body: JSON.stringify(value),
      headers: { "Content-Type": "application/json", ...(options.headers || {}) },
    });
  }
}

/** Parse a text/event-stream response body, calling ``onEvent({event, data, id})`` per event. */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) onEvent({ event: event.event, data: event.data.join("\n"), id: event.id });
        event = { event: "message", data: [], id: event.id };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") event.event = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
    }
  }
}

/**
 * Follow an event stream for as long as the page lives: reconnects with Last-Event-ID after a
 * drop (1 s, then longer, up to 15 s), and says so through ``onState("live" | "down")``.
 * Returns ``{close()}``.
 */
export function followEvents(api, path, { onEvent, onState = () => {} }) {
  const controller = new AbortController();
  let lastId = null;
  let delay = 1000;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(api.base + path, { headers: api.headers(headers), signal: controller.signal });
        if (!response.ok) throw await apiError(response);
        onState("live");
        delay = 1000;
        await readEvents(response, (event) => {
          if (event.id) lastId = event.id;
          onEvent(event);
        });
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && error.status === 400) lastId = null; // the journal moved on
      }
      onState("down");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return { close: () => controller.abort() };
}

/** A timestamp (RFC 3339) in the reader's own time zone, or "" for none. */
export function localTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Relative time to a timestamp: "in 52 s", "3 min ago". */
export function relativeTime(value, now = Date.now()) {
  const date = new Date(value).getTime();
  if (Number.isNaN(date)) return "";
  const seconds = Math.round((date - now) / 1000);
  const abs = Math.abs(seconds);
  const text = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : abs < 129600
    ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} days`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** Announce a message to screen readers (and show it) in the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}
