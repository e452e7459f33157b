// Small DOM helpers. Everything is built with createElement/textContent: titles, answers and
// metadata come from uploaded files and are never parsed as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** h("td", {class: "num", dataset: {testid: "x"}}, "text", childNode, [more], null) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "testid") el.dataset.testid = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function fmtDate(value) {
  if (!value) return "";
  let input = typeof value === "number" && value < 1e12 ? value * 1000 : value;
  // The server keeps UTC; a timestamp without an offset (SQLite drops it) is UTC, not local time.
  if (typeof input === "string" && /^\d{4}-\d\d-\d\dT[\d:.]+$/.test(input)) input += "Z";
  const date = new Date(input);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

export function fmtNum(value) {
  return typeof value === "number" ? value.toLocaleString() : value ?? "";
}

export function fmtScore(value) {
  if (typeof value !== "number") return String(value ?? "");
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(3);
}

export function fmtJson(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "object" && Object.keys(value).length === 0) return "";
  return JSON.stringify(value);
}

/** Parse an optional JSON-object field; returns {value} or {error}. Empty -> {value: fallback}. */
export function parseJsonObject(text, fallback = undefined) {
  const trimmed = (text || "").trim();
  if (!trimmed) return { value: fallback };
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (err) {
    return { error: `Not valid JSON: ${err.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: 'Must be a JSON object, like {"team": "support"}.' };
  }
  return { value };
}

/** Show or clear the error under a field, and mark the field for assistive technology. */
export function fieldError(field, errorEl, message) {
  errorEl.textContent = message || "";
  if (message) field.setAttribute("aria-invalid", "true");
  else field.removeAttribute("aria-invalid");
}

// Words too common to be worth highlighting.
const STOP = new Set(
  "about also and are because been but can could does for from had has have how into its not of off our she that the their them then there these they this those was were what when where which while who why will with would you your".split(" "),
);

/** Wrap each occurrence of the query's words (3+ characters, not stop words) in <mark>. */
export function highlight(text, query) {
  const found = (query || "").toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [];
  const words = [...new Set(found.filter((w) => !STOP.has(w)))];
  const frag = document.createDocumentFragment();
  if (!words.length || !text) {
    frag.append(text || "");
    return frag;
  }
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`(${escaped.join("|")})`, "giu");
  let last = 0;
  for (const match of text.matchAll(re)) {
    if (match.index > last) frag.append(text.slice(last, match.index));
    frag.append(h("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}

/** Run fn with the form's submit buttons disabled and aria-busy set. */
export async function busy(form, fn) {
  const buttons = $$("button", form);
  const before = buttons.map((b) => b.disabled);
  form.setAttribute("aria-busy", "true");
  buttons.forEach((b) => {
    if (b.type === "submit") b.disabled = true;
  });
  try {
    return await fn();
  } finally {
    form.removeAttribute("aria-busy");
    buttons.forEach((b, i) => {
      if (b.type === "submit") b.disabled = before[i];
    });
  }
}
