// The copilot's side of the admin page: assistants (list, create, edit, delete), handoffs to a
// person (list by status, the conversation, take / close) and disliked answers turned into FAQs.
// Everything is built with h()/textContent: names, messages and answers are never parsed as HTML.

import { api, seg } from "./api.js";
import { $, clear, fmtDate, h } from "./dom.js";

/**
 * Wire the three sections. ctx: {guard, say, clearError, confirmDialog, kbs(), nextRequest(name)}.
 * Returns {loadAssistants, loadHandoffs, loadFeedback}.
 */
export function setupCopilot(ctx) {
  const local = { assistants: [], editing: null, adapters: null };

  // --- assistants --------------------------------------------------------------------------

  function formError(message, field) {
    const el = $("#assistant-form-error");
    el.textContent = message || "";
    for (const input of document.querySelectorAll("#assistant-form [aria-invalid]")) input.removeAttribute("aria-invalid");
    if (field) field.setAttribute("aria-invalid", "true");
    if (message) el.scrollIntoView({ block: "nearest" });
  }

  /** The form field a 422 message names ("top_k: Input should be…"), if any. */
  function fieldNamed(message) {
    const match = /^(\w+)/.exec(message || "");
    const name = match && match[1];
    return name ? $(`#assistant-form [name="${name}"]`) : null;
  }

  function renderKbChoices(chosen = []) {
    const box = clear($("#assistant-kbs"));
    const names = ctx.kbs().map((kb) => kb.name);
    for (const name of chosen) if (!names.includes(name)) names.push(name);
    if (!names.length) {
      box.append(h("p", { class: "empty" }, "No knowledge bases yet: create one in the Knowledge bases tab."));
      return;
    }
    for (const name of names) {
      const id = `assistant-kb-${name}`;
      box.append(
        h(
          "span",
          { class: "kb-choice" },
          h("input", { type: "checkbox", id, value: name, checked: chosen.includes(name), testid: "assistant-kb", dataset: { kb: name } }),
          h("label", { for: id }, name),
        ),
      );
    }
  }

  /** The adapter choices; the registry is fetched once, with the assistants (not before a key). */
  async function loadAdapters(current, { fetch = false } = {}) {
    const select = $("#assistant-adapter");
    if (fetch && local.adapters === null) {
      try {
        const body = await api("GET", "/v1/adapters");
        local.adapters = (body && Array.isArray(body.adapters) ? body.adapters : [])
          .filter((a) => a.in_registry !== false)
          .map((a) => a.name);
      } catch {
        /* the router and "base" still work; tried again next time */
      }
    }
    const keep = select.value;
    const names = [...(local.adapters || [])];
    if (current && current !== "base" && !names.includes(current)) names.push(current);
    clear(select).append(
      h("option", { value: "" }, "router (pick per question)"),
      h("option", { value: "base" }, "base model (no adapter)"),
      ...names.map((name) => h("option", { value: name }, `adapter: ${name}`)),
    );
    select.value = current === undefined ? keep : current || "";
  }

  function checkedKbs() {
    return [...document.querySelectorAll('#assistant-kbs input[type="checkbox"]:checked')].map((c) => c.value);
  }

  function resetAssistantForm() {
    local.editing = null;
    $("#assistant-form").reset();
    $("#assistant-handoff-confidence").value = "0.1";
    formError("");
    $("#assistant-form-title").textContent = "Create an assistant";
    $('[data-testid="assistant-save"]').textContent = "Create assistant";
    $("#assistant-cancel").hidden = true;
    renderKbChoices([]);
    loadAdapters(null);
  }

  function editAssistant(a) {
    local.editing = a;
    formError("");
    $("#assistant-name").value = a.name;
    $("#assistant-description").value = a.description || "";
    renderKbChoices(a.kbs || []);
    $("#assistant-strict").checked = a.strict !== false;
    $("#assistant-faq-threshold").value = a.faq_threshold ?? "";
    $("#assistant-handoff-confidence").value = a.handoff_confidence ?? "";
    $("#assistant-top-k").value = a.top_k ?? "";
    $("#assistant-no-answer").value = a.no_answer_reply || "";
    $("#assistant-handoff-reply").value = a.handoff_reply || "";
    $("#assistant-system-prompt").value = a.system_prompt || "";
    $("#assistant-webhook").value = a.webhook_url || "";
    loadAdapters(a.adapter);
    $("#assistant-form-title").textContent = `Edit assistant “${a.name}”`;
    $('[data-testid="assistant-save"]').textContent = "Save changes";
    $("#assistant-cancel").hidden = false;
    $("#assistant-form").scrollIntoView({ block: "nearest" });
    $("#assistant-name").focus();
  }

  function numberField(input, label, { min, max, integer = false }) {
    const text = input.value.trim();
    if (!text) return null;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
      formError(`${label} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max} (or empty).`, input);
      input.focus();
      return undefined;
    }
    return value;
  }

  /** The form as an API body (every field; null = the default), or null when it is invalid. */
  function readAssistantForm() {
    const name = $("#assistant-name").value.trim();
    if (!name) {
      formError("Give the assistant a name.", $("#assistant-name"));
      $("#assistant-name").focus();
      return null;
    }
    const kbs = checkedKbs();
    if (!kbs.length) {
      formError("Choose at least one knowledge base.", $("#assistant-kbs"));
      return null;
    }
    const faq = numberField($("#assistant-faq-threshold"), "FAQ threshold", { min: 0, max: 1 });
    if (faq === undefined) return null;
    const confidence = numberField($("#assistant-handoff-confidence"), "Handoff confidence", { min: 0, max: 1 });
    if (confidence === undefined) return null;
    const topK = numberField($("#assistant-top-k"), "Top k", { min: 1, max: 20, integer: true });
    if (topK === undefined) return null;
    const text = (sel) => $(sel).value.trim() || null;
    return {
      name,
      kbs,
      description: text("#assistant-description"),
      strict: $("#assistant-strict").checked,
      faq_threshold: faq,
      handoff_confidence: confidence,
      top_k: topK,
      adapter: $("#assistant-adapter").value || null,
      no_answer_reply: text("#assistant-no-answer"),
      handoff_reply: text("#assistant-handoff-reply"),
      system_prompt: text("#assistant-system-prompt"),
      webhook_url: text("#assistant-webhook"),
    };
  }

  async function saveAssistant() {
    formError("");
    const body = readAssistantForm();
    if (!body) return;
    const editing = local.editing;
    let payload;
    if (editing) {
      // Only what changed: a PATCH keeps the rest (and null sends a field back to its default).
      payload = {};
      for (const [k, v] of Object.entries(body)) {
        const before = editing[k] === undefined ? null : editing[k];
        const same = Array.isArray(v) ? JSON.stringify(v) === JSON.stringify(before) : v === (before === "" ? null : before);
        if (!same) payload[k] = v;
      }
      if (!Object.keys(payload).length) {
        resetAssistantForm();
        ctx.say("Nothing changed.");
        return;
      }
    } else {
      // A create leaves out what is empty, so the server's defaults apply (handoff_confidence
      // null is a choice: never hand over on low confidence).
      payload = Object.fromEntries(Object.entries(body).filter(([k, v]) => v !== null || k === "handoff_confidence"));
    }
    let saved;
    try {
      saved = editing
        ? await api("PATCH", `/v1/assistants/${seg(editing.id)}`, { json: payload })
        : await api("POST", "/v1/assistants", { json: payload });
    } catch (err) {
      if (err && err.name === "AbortError") return;
      const status = err && err.status ? ` (HTTP ${err.status}${err.code ? ` ${err.code}` : ""})` : "";
      formError(`${err.message}${status}`, fieldNamed(err.message));
      return;
    }
    resetAssistantForm();
    ctx.say(editing ? `Assistant “${saved.name}” saved.` : `Assistant “${saved.name}” created.`);
    await loadAssistants();
  }

  async function deleteAssistant(a) {
    const ok = await ctx.confirmDialog(
      "Delete assistant?",
      `Delete the assistant “${a.name}” with its sessions, messages, feedback and handoffs? Its knowledge bases stay.`,
    );
    if (!ok) return;
    await ctx.guard(async () => {
      await api("DELETE", `/v1/assistants/${seg(a.id)}`);
      if (local.editing && local.editing.id === a.id) resetAssistantForm();
      ctx.say(`Assistant “${a.name}” deleted.`);
      await loadAssistants();
    });
  }

  async function loadAssistants() {
    const current = ctx.nextRequest("assistants");
    const body = await api("GET", "/v1/assistants");
    if (!current()) return;
    local.assistants = Array.isArray(body && body.assistants) ? body.assistants : [];
    $("#assistants-empty").hidden = local.assistants.length > 0;
    renderKbChoices(checkedKbs());
    await loadAdapters(undefined, { fetch: true });
    const rows = clear($("#assistant-rows"));
    for (const a of local.assistants) {
      rows.append(
        h(
          "tr",
          { testid: "assistant-row", dataset: { assistant: a.name, assistantId: a.id } },
          h(
            "th",
            { scope: "row" },
            h("span", { testid: "assistant-row-name" }, a.name),
            a.description ? h("div", { class: "muted small-text" }, a.description) : null,
          ),
          h(
            "td",
            { testid: "assistant-row-kbs" },
            (a.kbs || []).map((kb) => h("span", { class: "badge" }, kb)),
            a.missing_kbs ? h("span", { class: "badge badge-failed", title: "a knowledge base it named was deleted: edit its knowledge bases" }, `${a.missing_kbs} deleted`) : null,
          ),
          h("td", { testid: "assistant-row-strict" }, a.strict ? "strict" : "not strict"),
          h("td", { class: "num", testid: "assistant-row-faq-threshold" }, a.faq_threshold ?? "default"),
          h("td", { testid: "assistant-row-adapter" }, a.adapter || "router"),
          h("td", { class: "num" }, a.top_k ?? "default"),
          h("td", { class: "date" }, fmtDate(a.updated_at)),
          h(
            "td",
            { class: "row-actions" },
            h("button", { type: "button", class: "small", testid: "assistant-edit", "aria-label": `Edit assistant ${a.name}`, onclick: () => editAssistant(a) }, "Edit"),
            h(
              "button",
              { type: "button", class: "small danger", testid: "assistant-delete", "aria-label": `Delete assistant ${a.name}`, onclick: () => deleteAssistant(a) },
              "Delete",
            ),
          ),
        ),
      );
    }
  }

  // --- handoffs ----------------------------------------------------------------------------

  function messageList(messages) {
    if (!messages.length) return h("p", { class: "empty" }, "No stored messages (a stateless request).");
    return h(
      "ol",
      { class: "conversation", testid: "handoff-messages" },
      messages.map((m) =>
        h(
          "li",
          { class: `msg msg-${m.role === "user" ? "user" : "assistant"}`, testid: "handoff-message", dataset: { role: m.role } },
          h("span", { class: "msg-role" }, m.role === "user" ? "Customer" : "Assistant"),
          h("div", { class: "msg-text" }, m.content || ""),
        ),
      ),
    );
  }

  async function moveHandoff(handoff, status) {
    await ctx.guard(async () => {
      const payload = { status };
      const assignee = $("#handoff-assignee").value.trim();
      if (status === "taken" && assignee) payload.assignee = assignee;
      await api("PATCH", `/v1/handoffs/${seg(handoff.id)}`, { json: payload });
      ctx.say(`Handoff ${status === "taken" ? "taken" : status === "closed" ? "closed" : "reopened"}.`);
      await loadHandoffs();
    });
  }

  function handoffCard(handoff) {
    const messages = h("div", { class: "handoff-body" }, h("p", { class: "muted" }, "Loading the conversation…"));
    const card = h(
      "article",
      { class: `handoff status-${handoff.status}`, testid: "handoff", dataset: { handoffId: handoff.id, status: handoff.status } },
      h(
        "div",
        { class: "job-head" },
        h("span", { class: `badge badge-handoff-${handoff.status}`, testid: "handoff-status" }, handoff.status),
        h("strong", { testid: "handoff-assistant" }, handoff.assistant || ""),
        h("span", { testid: "handoff-reason" }, handoff.reason || ""),
        handoff.assignee ? h("span", { class: "muted", testid: "handoff-assignee" }, `· ${handoff.assignee}`) : null,
        h("span", { class: "spacer" }),
        h("time", { class: "muted", datetime: handoff.created_at }, fmtDate(handoff.created_at)),
      ),
      messages,
      h(
        "div",
        { class: "actions" },
        handoff.status === "open"
          ? h("button", { type: "button", class: "small primary", testid: "handoff-take", onclick: () => moveHandoff(handoff, "taken") }, "Take")
          : null,
        handoff.status === "taken"
          ? h("button", { type: "button", class: "small", testid: "handoff-reopen", onclick: () => moveHandoff(handoff, "open") }, "Give back")
          : null,
        handoff.status !== "closed"
          ? h("button", { type: "button", class: "small", testid: "handoff-close", onclick: () => moveHandoff(handoff, "closed") }, "Close")
          : null,
        handoff.webhook && handoff.webhook.status && handoff.webhook.status !== "none"
          ? h("span", { class: "muted" }, `webhook: ${handoff.webhook.status}`)
          : null,
      ),
    );
    api("GET", `/v1/handoffs/${seg(handoff.id)}`)
      .then((detail) => clear(messages).append(messageList(Array.isArray(detail && detail.messages) ? detail.messages : [])))
      .catch((err) => clear(messages).append(h("p", { class: "bad" }, err.message)));
    return card;
  }

  async function loadHandoffs() {
    const current = ctx.nextRequest("handoffs");
    const status = $("#handoff-status").value;
    const body = await api("GET", "/v1/handoffs", { query: { status } });
    if (!current()) return;
    const handoffs = Array.isArray(body && body.handoffs) ? body.handoffs : [];
    $("#handoffs-empty").hidden = handoffs.length > 0;
    $("#handoffs-count").textContent = typeof body.total === "number" ? `${body.total} handoff${body.total === 1 ? "" : "s"}` : "";
    clear($("#handoff-list")).append(...handoffs.map(handoffCard));
  }

  // --- feedback ----------------------------------------------------------------------------

  async function loadFeedback() {
    const current = ctx.nextRequest("feedback");
    const body = await api("GET", "/v1/feedback", { query: { rating: "down" } });
    if (!current()) return;
    const rows = Array.isArray(body && body.feedback) ? body.feedback : [];
    $("#feedback-empty").hidden = rows.length > 0;
    const list = clear($("#feedback-list"));
    for (const f of rows) list.append(feedbackCard(f));
  }

  function feedbackCard(f) {
    const answerId = `feedback-answer-${f.id}`;
    const editor = h(
      "form",
      { class: "faq-editor", testid: "feedback-faq-form", hidden: true, novalidate: true },
      h("label", { for: answerId }, "Corrected answer (stored as a FAQ, returned verbatim)"),
      h("textarea", { id: answerId, rows: 4, testid: "feedback-faq-answer" }),
      h("p", { class: "field-error", role: "alert", testid: "feedback-faq-error" }),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary small", testid: "feedback-faq-save" }, "Save as FAQ"),
        h("button", { type: "button", class: "small", testid: "feedback-faq-cancel", onclick: () => (editor.hidden = true) }, "Cancel"),
      ),
    );
    const textarea = editor.querySelector("textarea");
    const error = editor.querySelector(".field-error");
    editor.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const answer = textarea.value.trim();
      if (!answer) {
        error.textContent = "Write the corrected answer.";
        textarea.focus();
        return;
      }
      try {
        const made = await api("POST", `/v1/feedback/${seg(f.id)}/faq`, { json: { answer } });
        ctx.say(`FAQ ${made.id} added to “${made.kb}”: the next customer asking this gets it verbatim.`);
        await loadFeedback();
      } catch (err) {
        error.textContent = `${err.message}${err.status ? ` (HTTP ${err.status})` : ""}`;
      }
    });
    const done = f.faq && f.faq.faq_id;
    return h(
      "article",
      { class: "feedback", testid: "feedback", dataset: { feedbackId: f.id } },
      h(
        "div",
        { class: "job-head" },
        h("span", { class: "badge badge-failed" }, "disliked"),
        h("strong", {}, f.assistant || ""),
        f.answer_source ? h("span", { class: "badge" }, f.answer_source) : null,
        done ? h("span", { class: "badge badge-done", testid: "feedback-faq-done" }, `FAQ ${f.faq.faq_id} in ${f.faq.kb}`) : null,
        h("span", { class: "spacer" }),
        h("time", { class: "muted" }, fmtDate(f.updated_at || f.created_at)),
      ),
      h("dl", { class: "qa" },
        h("dt", {}, "Question"), h("dd", { testid: "feedback-question" }, f.question ?? "(none)"),
        h("dt", {}, "Answer"), h("dd", { testid: "feedback-answer" }, f.answer ?? "(none)"),
        h("dt", {}, "Comment"), h("dd", { testid: "feedback-comment" }, f.comment || "—"),
      ),
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            class: "small",
            testid: "feedback-make-faq",
            onclick: () => {
              editor.hidden = false;
              if (!textarea.value) textarea.value = f.answer || "";
              textarea.focus();
            },
          },
          done ? "Replace FAQ" : "Make FAQ",
        ),
      ),
      editor,
    );
  }

  // --- wiring ------------------------------------------------------------------------------

  $("#assistant-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.clearError();
    ctx.guard(saveAssistant);
  });
  $("#assistant-cancel").addEventListener("click", resetAssistantForm);
  $("#assistants-refresh").addEventListener("click", () => ctx.guard(loadAssistants));
  $("#handoffs-refresh").addEventListener("click", () => ctx.guard(loadHandoffs));
  $("#handoff-status").addEventListener("change", () => ctx.guard(loadHandoffs));
  $("#feedback-refresh").addEventListener("click", () => ctx.guard(loadFeedback));
  resetAssistantForm();

  return { loadAssistants, loadHandoffs, loadFeedback, renderKbChoices: () => renderKbChoices(checkedKbs()) };
}
