// ragnet admin page: knowledge bases, documents, FAQs, jobs, hit testing and the copilot
// (assistants, handoffs, disliked answers) over the /v1 API.
// Plain ES modules, no build step, nothing loaded from outside this server.

import { api, getKey, seg, setKey, upload } from "./api.js";
import {
  $,
  $$,
  busy,
  clear,
  fieldError,
  fmtDate,
  fmtJson,
  fmtNum,
  fmtScore,
  h,
  highlight,
  parseJsonObject,
} from "./dom.js";
import { setupCopilot } from "./copilot.js";
import { cancelJob, isActive, jobCard, watchJob } from "./jobs.js";

const KB_STORAGE = "ragnet.admin.kb";
const TABS = ["kbs", "documents", "faqs", "jobs", "search", "assistants", "handoffs", "feedback"];
const JOBS_REFRESH_MS = 2000;
const PAGE = 100; // documents and FAQs per page (the API allows up to 1000)

const state = {
  kbs: [],
  kb: null,
  tab: "kbs",
  editingFaq: null, // the FAQ being edited, or null when adding
  docsOffset: 0,
  faqsOffset: 0,
  jobsTimer: null,
  stopUploadWatch: null,
  stopImportWatch: null,
};

// --- notices -------------------------------------------------------------------------------

let statusTimer = null;

function showError(err) {
  if (err && err.name === "AbortError") return;
  const message = err instanceof Error ? err.message : String(err);
  $("#notice-text").textContent = message;
  $("#notice").hidden = false;
  say("");
  if (!(err && err.status)) console.error(err);
}

function clearError() {
  $("#notice").hidden = true;
  $("#notice-text").textContent = "";
}

function say(message) {
  clearTimeout(statusTimer);
  $("#status").textContent = message;
  if (message) statusTimer = setTimeout(() => ($("#status").textContent = ""), 8000);
}

// Each list has a request counter: a response that a newer request has overtaken is dropped,
// so a slow old answer never paints over a fresh one.
const requestSeq = {};
function nextRequest(name) {
  requestSeq[name] = (requestSeq[name] || 0) + 1;
  const seq = requestSeq[name];
  return () => requestSeq[name] === seq;
}

/** Run an async action, sending any failure to the error banner. */
async function guard(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

/** A form's submit handler: validation, busy buttons, errors to the banner. */
function onSubmit(form, fn) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    busy(form, () => guard(() => fn(event)));
  });
}

function confirmDialog(title, text, okLabel = "Delete") {
  const dialog = $("#confirm-dialog");
  const form = $("form", dialog);
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  // Settled by this dialog's own button or Escape (not by a "close" event, which arrives later
  // and could belong to the previous confirmation).
  return new Promise((resolve) => {
    const finish = (ok) => {
      form.removeEventListener("submit", onButton);
      dialog.removeEventListener("cancel", onEscape);
      resolve(ok);
    };
    const onButton = (event) => finish(Boolean(event.submitter && event.submitter.value === "ok"));
    const onEscape = () => finish(false);
    form.addEventListener("submit", onButton);
    dialog.addEventListener("cancel", onEscape);
    dialog.showModal();
  });
}

function plural(n, word) {
  return `${fmtNum(n)} ${word}${n === 1 ? "" : "s"}`;
}

// --- tabs ------------------------------------------------------------------------------------

function showTab(name, { focus = false, refresh = true } = {}) {
  if (!TABS.includes(name)) name = "kbs";
  state.tab = name;
  for (const tab of $$('[role="tab"]')) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  for (const panel of $$('[role="tabpanel"]')) panel.hidden = panel.id !== `panel-${name}`;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (refresh) refreshTab();
}

function refreshTab() {
  clearTimeout(state.jobsTimer);
  switch (state.tab) {
    case "kbs":
      return guard(loadKbs);
    case "documents":
      return guard(loadDocs);
    case "faqs":
      return guard(loadFaqs);
    case "jobs":
      return guard(loadJobs);
    case "assistants":
      return copilot && guard(copilot.loadAssistants);
    case "handoffs":
      return copilot && guard(copilot.loadHandoffs);
    case "feedback":
      return copilot && guard(copilot.loadFeedback);
    default:
      return undefined;
  }
}

function wireTabs() {
  const tabs = $$('[role="tab"]');
  for (const tab of tabs) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  $("#tabs").addEventListener("keydown", (event) => {
    const i = tabs.findIndex((t) => t.dataset.tab === state.tab);
    const moves = { ArrowDown: i + 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = (moves[event.key] + tabs.length) % tabs.length;
    showTab(tabs[next].dataset.tab, { focus: true });
  });
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (name !== state.tab) showTab(name);
  });
}

// --- API key ---------------------------------------------------------------------------------

function renderKeyState() {
  $("#key-state").textContent = getKey() ? "key saved" : "no key";
}

function wireKey() {
  $("#api-key").value = getKey();
  renderKeyState();
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("#api-key").value.trim());
    renderKeyState();
    clearError();
    say(getKey() ? "API key saved in this browser." : "API key cleared.");
    guard(loadKbs).then(() => state.tab !== "kbs" && refreshTab());
  });
}

// --- knowledge bases -------------------------------------------------------------------------

function setKb(name) {
  const changed = (name || null) !== state.kb;
  state.kb = name || null;
  try {
    if (state.kb) localStorage.setItem(KB_STORAGE, state.kb);
    else localStorage.removeItem(KB_STORAGE);
  } catch {
    /* storage disabled */
  }
  $("#kb-select").value = state.kb || "";
  for (const el of $$("[data-kb-label]")) el.textContent = state.kb ? `· ${state.kb}` : "";
  for (const el of $$("[data-needs-kb]")) el.hidden = !state.kb;
  for (const el of $$("[data-no-kb]")) el.hidden = Boolean(state.kb);
  for (const row of $$("#kb-rows tr")) {
    if (row.dataset.kb === state.kb) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
  if (!changed) return;
  // Per-KB views start over.
  state.docsOffset = 0;
  state.faqsOffset = 0;
  if (state.stopUploadWatch) state.stopUploadWatch();
  if (state.stopImportWatch) state.stopImportWatch();
  clear($("#upload-job"));
  clear($("#faq-import-job"));
  clear($("#search-results"));
  resetFaqForm();
  if (state.tab !== "kbs") refreshTab();
}

async function loadKbs() {
  const current = nextRequest("kbs");
  const body = await api("GET", "/v1/kbs");
  if (!current()) return;
  state.kbs = Array.isArray(body && body.kbs) ? body.kbs : [];
  renderKbSelect();
  renderKbTable();
  if (copilot) copilot.renderKbChoices();
  if (!state.kbs.some((kb) => kb.name === state.kb)) setKb(state.kbs.length ? state.kbs[0].name : null);
  else setKb(state.kb);
}

function renderKbSelect() {
  const select = $("#kb-select");
  clear(select);
  if (!state.kbs.length) select.append(h("option", { value: "" }, "(none yet)"));
  for (const kb of state.kbs) select.append(h("option", { value: kb.name }, kb.name));
  select.value = state.kb || "";
}

function renderKbTable() {
  const rows = clear($("#kb-rows"));
  $("#kb-empty").hidden = state.kbs.length > 0;
  for (const kb of state.kbs) {
    const current = kb.name === state.kb;
    rows.append(
      h(
        "tr",
        { testid: "kb-row", dataset: { kb: kb.name }, "aria-current": current ? "true" : null },
        h("th", { scope: "row" }, h("span", { class: "kb-name", testid: "kb-row-name" }, kb.name)),
        h("td", { class: "desc" }, kb.description || ""),
        h("td", {}, h("span", { class: "badge" }, kb.chunking || "")),
        h("td", { class: "num", testid: "kb-row-documents" }, fmtNum(kb.documents)),
        h("td", { class: "num", testid: "kb-row-chunks" }, fmtNum(kb.chunks)),
        h("td", { class: "num", testid: "kb-row-faqs" }, fmtNum(kb.faqs)),
        h("td", { class: "date" }, fmtDate(kb.created_at)),
        h(
          "td",
          { class: "row-actions" },
          h(
            "button",
            {
              type: "button",
              class: "small",
              testid: "kb-open",
              "aria-label": `Open documents of ${kb.name}`,
              onclick: () => {
                setKb(kb.name);
                showTab("documents");
              },
            },
            "Open",
          ),
          h(
            "button",
            { type: "button", class: "small", testid: "kb-edit", "aria-label": `Rename or describe ${kb.name}`, onclick: () => openKbEdit(kb) },
            "Edit",
          ),
          h(
            "button",
            { type: "button", class: "small danger", testid: "kb-delete", "aria-label": `Delete ${kb.name}`, onclick: () => deleteKb(kb) },
            "Delete",
          ),
        ),
      ),
    );
  }
}

function wireKbs() {
  $("#kbs-refresh").addEventListener("click", () => guard(loadKbs));
  $("#kb-select").addEventListener("change", (event) => setKb(event.target.value));

  onSubmit($("#kb-create-form"), async () => {
    const name = $("#kb-name").value.trim();
    if (!name) {
      $("#kb-name").focus();
      throw new Error("Give the knowledge base a name.");
    }
    const description = $("#kb-description").value.trim();
    const payload = { name, chunking: $("#kb-chunking").value };
    if (description) payload.description = description;
    const kb = await api("POST", "/v1/kbs", { json: payload });
    $("#kb-create-form").reset();
    await loadKbs();
    setKb(kb.name);
    say(`Knowledge base “${kb.name}” created. Upload documents in the Documents tab.`);
  });

  const dialog = $("#kb-edit-dialog");
  $('[data-testid="kb-edit-cancel"]').type = "button";
  $('[data-testid="kb-edit-cancel"]').addEventListener("click", () => dialog.close());
  $("#kb-edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kb = state.kbs.find((k) => k.name === dialog.dataset.kb) || { name: dialog.dataset.kb };
    const name = $("#kb-edit-name").value.trim();
    const description = $("#kb-edit-description").value.trim();
    const error = $("#kb-edit-error");
    if (!name) {
      error.textContent = "The name cannot be empty.";
      return;
    }
    const payload = {};
    if (name !== kb.name) payload.name = name;
    if (description !== (kb.description || "")) payload.description = description;
    if (!Object.keys(payload).length) {
      dialog.close();
      return;
    }
    try {
      const updated = await api("PATCH", `/v1/kbs/${seg(kb.name)}`, { json: payload });
      dialog.close();
      const newName = (updated && updated.name) || name;
      if (state.kb === kb.name) state.kb = newName; // follow the rename without resetting views
      await loadKbs();
      say(payload.name ? `Renamed “${kb.name}” to “${newName}”.` : `Updated “${newName}”.`);
    } catch (err) {
      error.textContent = err.message;
    }
  });
}

function openKbEdit(kb) {
  const dialog = $("#kb-edit-dialog");
  dialog.dataset.kb = kb.name;
  $("#kb-edit-title").textContent = `Edit “${kb.name}”`;
  $("#kb-edit-name").value = kb.name;
  $("#kb-edit-description").value = kb.description || "";
  $("#kb-edit-error").textContent = "";
  dialog.showModal();
  $("#kb-edit-name").select();
}

async function deleteKb(kb) {
  const ok = await confirmDialog(
    "Delete knowledge base?",
    `Delete the knowledge base “${kb.name}” with its ${plural(kb.documents || 0, "document")}, ` +
      `${plural(kb.chunks || 0, "chunk")} and ${plural(kb.faqs || 0, "FAQ")}? This cannot be undone.`,
  );
  if (!ok) return;
  await guard(async () => {
    await api("DELETE", `/v1/kbs/${seg(kb.name)}`);
    if (state.kb === kb.name) setKb(null);
    await loadKbs();
    say(`Knowledge base “${kb.name}” deleted.`);
  });
}

// --- documents -------------------------------------------------------------------------------

async function loadDocs() {
  const kb = state.kb;
  if (!kb) return;
  const current = nextRequest("docs");
  const body = await api("GET", `/v1/kbs/${seg(kb)}/documents`, { query: { offset: state.docsOffset, limit: PAGE } });
  if (kb !== state.kb || !current()) return; // switched, or overtaken, while loading
  const docs = Array.isArray(body && body.documents) ? body.documents : [];
  const total = typeof body.total === "number" ? body.total : docs.length;
  if (!docs.length && total > 0 && state.docsOffset > 0) {
    state.docsOffset = Math.max(0, state.docsOffset - PAGE); // the last page emptied: step back
    return loadDocs();
  }
  renderPager("docs", state.docsOffset, docs.length, total, "document");
  $("#docs-empty").hidden = docs.length > 0;
  const rows = clear($("#doc-rows"));
  for (const doc of docs) {
    rows.append(
      h(
        "tr",
        { testid: "doc-row", dataset: { docId: doc.doc_id } },
        h("th", { scope: "row", class: "title", testid: "doc-title" }, doc.title || doc.doc_id),
        h("td", {}, h("code", { class: "source", title: `doc_id: ${doc.doc_id}` }, doc.source || doc.doc_id)),
        h("td", { class: "num", testid: "doc-chunks" }, fmtNum(doc.chunks)),
        h("td", {}, doc.status ? h("span", { class: `badge badge-${doc.status}` }, doc.status) : ""),
        h("td", {}, h("code", { class: "meta" }, fmtJson(doc.metadata))),
        h("td", { class: "date" }, fmtDate(doc.updated_at)),
        h(
          "td",
          { class: "row-actions" },
          h(
            "button",
            {
              type: "button",
              class: "small danger",
              testid: "doc-delete",
              "aria-label": `Delete ${doc.title || doc.doc_id}`,
              onclick: () => deleteDoc(kb, doc),
            },
            "Delete",
          ),
        ),
      ),
    );
  }
}

async function deleteDoc(kb, doc) {
  const ok = await confirmDialog(
    "Delete document?",
    `Delete “${doc.title || doc.doc_id}” (${plural(doc.chunks || 0, "chunk")}) from “${kb}”?`,
  );
  if (!ok) return;
  await guard(async () => {
    await api("DELETE", `/v1/kbs/${seg(kb)}/documents/${seg(doc.doc_id)}`);
    say(`Deleted “${doc.title || doc.doc_id}”.`);
    await loadDocs();
    await loadKbs();
  });
}

/** "1–100 of 250 documents" and the Previous/Next buttons of a paged list. */
function renderPager(name, offset, shown, total, noun) {
  $(`#${name}-count`).textContent =
    total > shown ? `${fmtNum(offset + 1)}–${fmtNum(offset + shown)} of ${plural(total, noun)}` : plural(total, noun);
  $(`#${name}-pager`).hidden = total <= PAGE && offset === 0;
  $(`#${name}-prev`).disabled = offset === 0;
  $(`#${name}-next`).disabled = offset + shown >= total;
}

function wirePager(name, load) {
  const key = `${name}Offset`;
  $(`#${name}-prev`).addEventListener("click", () => {
    state[key] = Math.max(0, state[key] - PAGE);
    guard(load);
  });
  $(`#${name}-next`).addEventListener("click", () => {
    state[key] += PAGE;
    guard(load);
  });
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

/** Send a multipart form with a progress bar, then watch the job it starts. */
async function sendWithProgress({ path, formData, box, bar, text, abortButton, jobContainer, stopKey, onEnd }) {
  box.hidden = false;
  bar.value = 0;
  text.textContent = "0%";
  const { promise, abort } = upload(path, formData, (fraction, loaded, total) => {
    if (fraction === null) {
      bar.removeAttribute("value");
      text.textContent = fmtBytes(loaded);
      return;
    }
    bar.value = Math.round(fraction * 100);
    text.textContent = total ? `${Math.round(fraction * 100)}% of ${fmtBytes(total)}` : `${Math.round(fraction * 100)}%`;
  });
  if (abortButton) {
    abortButton.hidden = false;
    abortButton.onclick = abort;
  }
  let body;
  try {
    body = await promise;
  } catch (err) {
    box.hidden = true;
    throw err;
  } finally {
    if (abortButton) abortButton.hidden = true;
  }
  bar.value = 100;
  text.textContent = "sent";
  const job = body && body.job ? body.job : body;
  if (state[stopKey]) state[stopKey]();
  if (!job || !job.id) {
    onEnd(null);
    return;
  }
  state[stopKey] = watchJob(jobContainer, job, {
    onEnd: (finished) => {
      box.hidden = true;
      onEnd(finished);
    },
    onError: showError,
  });
}

function jobSummary(job) {
  if (!job) return "Done.";
  const failed = (job.failures || []).length;
  if (job.status === "done") return `Job finished: ${job.done}/${job.total} done${failed ? `, ${failed} failed` : ""}.`;
  return `Job ${job.status}${job.message ? `: ${job.message}` : "."}`;
}

function wireDocs() {
  $("#docs-refresh").addEventListener("click", () => guard(loadDocs));
  wirePager("docs", loadDocs);
  const filesInput = $("#doc-files");
  const metaInput = $("#doc-metadata");
  metaInput.addEventListener("input", () => fieldError(metaInput, $("#doc-metadata-error"), ""));

  onSubmit($("#upload-form"), async () => {
    const kb = state.kb;
    const files = [...filesInput.files];
    if (!files.length) {
      filesInput.focus();
      throw new Error("Choose one or more files to upload.");
    }
    const meta = parseJsonObject(metaInput.value);
    fieldError(metaInput, $("#doc-metadata-error"), meta.error);
    if (meta.error) {
      metaInput.focus();
      return;
    }
    const formData = new FormData();
    for (const file of files) formData.append("files", file, file.name);
    if (meta.value) formData.append("metadata", JSON.stringify(meta.value));
    clear($("#upload-job"));
    await sendWithProgress({
      path: `/v1/kbs/${seg(kb)}/documents`,
      formData,
      box: $("#upload-progress-box"),
      bar: $("#upload-progress"),
      text: $("#upload-progress-text"),
      abortButton: $("#upload-abort"),
      jobContainer: $("#upload-job"),
      stopKey: "stopUploadWatch",
      onEnd: (job) => {
        say(jobSummary(job));
        if (state.kb === kb) guard(loadDocs);
        guard(loadKbs);
      },
    });
    filesInput.value = "";
    say(`Uploaded ${plural(files.length, "file")}; ingesting…`);
  });
}

// --- FAQs ------------------------------------------------------------------------------------

async function loadFaqs() {
  const kb = state.kb;
  if (!kb) return;
  const current = nextRequest("faqs");
  const body = await api("GET", `/v1/kbs/${seg(kb)}/faqs`, { query: { offset: state.faqsOffset, limit: PAGE } });
  if (kb !== state.kb || !current()) return;
  const faqs = Array.isArray(body && body.faqs) ? body.faqs : [];
  const total = typeof body.total === "number" ? body.total : faqs.length;
  if (!faqs.length && total > 0 && state.faqsOffset > 0) {
    state.faqsOffset = Math.max(0, state.faqsOffset - PAGE);
    return loadFaqs();
  }
  renderPager("faqs", state.faqsOffset, faqs.length, total, "FAQ");
  $("#faqs-empty").hidden = faqs.length > 0;
  const rows = clear($("#faq-rows"));
  for (const faq of faqs) {
    const questions = Array.isArray(faq.questions) ? faq.questions : [];
    rows.append(
      h(
        "tr",
        { testid: "faq-row", dataset: { faqId: faq.id } },
        h("td", {}, h("code", { class: "faq-id" }, faq.id)),
        h("td", {}, h("ul", { class: "questions", testid: "faq-row-questions" }, questions.map((q) => h("li", {}, q)))),
        h("td", {}, h("div", { class: "answer clamp", testid: "faq-row-answer" }, faq.answer || "")),
        h(
          "td",
          { class: "row-actions" },
          h("button", { type: "button", class: "small", testid: "faq-edit", "aria-label": `Edit FAQ ${faq.id}`, onclick: () => editFaq(faq) }, "Edit"),
          h(
            "button",
            { type: "button", class: "small danger", testid: "faq-delete", "aria-label": `Delete FAQ ${faq.id}`, onclick: () => deleteFaq(kb, faq) },
            "Delete",
          ),
        ),
      ),
    );
  }
}

function resetFaqForm() {
  state.editingFaq = null;
  $("#faq-form").reset();
  fieldError($("#faq-metadata"), $("#faq-metadata-error"), "");
  $("#faq-id").readOnly = false;
  $("#faq-form-title").textContent = "Add a FAQ";
  $('[data-testid="faq-save"]').textContent = "Add FAQ";
  $("#faq-cancel").hidden = true;
}

function editFaq(faq) {
  state.editingFaq = faq;
  $("#faq-id").value = faq.id;
  $("#faq-id").readOnly = true;
  $("#faq-questions").value = (faq.questions || []).join("\n");
  $("#faq-answer").value = faq.answer || "";
  $("#faq-metadata").value = faq.metadata && Object.keys(faq.metadata).length ? JSON.stringify(faq.metadata, null, 2) : "";
  $("#faq-form-title").textContent = `Edit FAQ ${faq.id}`;
  $('[data-testid="faq-save"]').textContent = "Save changes";
  $("#faq-cancel").hidden = false;
  $("#faq-form").scrollIntoView({ block: "nearest" });
  $("#faq-questions").focus();
}

async function deleteFaq(kb, faq) {
  const first = (faq.questions || [])[0] || faq.id;
  const ok = await confirmDialog("Delete FAQ?", `Delete the FAQ “${first}”?`);
  if (!ok) return;
  await guard(async () => {
    await api("DELETE", `/v1/kbs/${seg(kb)}/faqs/${seg(faq.id)}`);
    if (state.editingFaq && state.editingFaq.id === faq.id) resetFaqForm();
    say("FAQ deleted.");
    await loadFaqs();
    await loadKbs();
  });
}

function wireFaqs() {
  $("#faqs-refresh").addEventListener("click", () => guard(loadFaqs));
  wirePager("faqs", loadFaqs);
  $("#faq-cancel").addEventListener("click", resetFaqForm);
  const metaInput = $("#faq-metadata");
  metaInput.addEventListener("input", () => fieldError(metaInput, $("#faq-metadata-error"), ""));

  onSubmit($("#faq-form"), async () => {
    const kb = state.kb;
    const questions = $("#faq-questions")
      .value.split("\n")
      .map((q) => q.trim())
      .filter(Boolean);
    const answer = $("#faq-answer").value.trim();
    if (!questions.length) {
      $("#faq-questions").focus();
      throw new Error("Write at least one question (one variant per line).");
    }
    if (!answer) {
      $("#faq-answer").focus();
      throw new Error("Write the answer.");
    }
    const meta = parseJsonObject(metaInput.value);
    fieldError(metaInput, $("#faq-metadata-error"), meta.error);
    if (meta.error) {
      metaInput.focus();
      return;
    }
    const payload = { questions, answer };
    if (meta.value) payload.metadata = meta.value;
    const editing = state.editingFaq;
    let saved;
    if (editing) {
      saved = await api("PUT", `/v1/kbs/${seg(kb)}/faqs/${seg(editing.id)}`, { json: payload });
    } else {
      const id = $("#faq-id").value.trim();
      if (id) payload.id = id;
      saved = await api("POST", `/v1/kbs/${seg(kb)}/faqs`, { json: payload });
    }
    resetFaqForm();
    say(editing ? `FAQ ${editing.id} saved.` : `FAQ ${(saved && saved.id) || ""} added.`);
    await loadFaqs();
    guard(loadKbs);
  });

  onSubmit($("#faq-import-form"), async () => {
    const kb = state.kb;
    const input = $("#faq-import-file");
    const file = input.files[0];
    if (!file) {
      input.focus();
      throw new Error("Choose a .csv, .json or .jsonl file to import.");
    }
    const formData = new FormData();
    formData.append("file", file, file.name);
    clear($("#faq-import-job"));
    await sendWithProgress({
      path: `/v1/kbs/${seg(kb)}/faqs/import`,
      formData,
      box: $("#faq-import-progress-box"),
      bar: $("#faq-import-progress"),
      text: $("#faq-import-progress-text"),
      jobContainer: $("#faq-import-job"),
      stopKey: "stopImportWatch",
      onEnd: (job) => {
        say(jobSummary(job));
        if (state.kb === kb) guard(loadFaqs);
        guard(loadKbs);
      },
    });
    input.value = "";
  });
}

// --- jobs ------------------------------------------------------------------------------------

async function loadJobs() {
  clearTimeout(state.jobsTimer);
  const kb = state.kb;
  if (!kb) return;
  const current = nextRequest("jobs");
  const body = await api("GET", "/v1/jobs", { query: { kb } });
  if (kb !== state.kb || state.tab !== "jobs" || !current()) return;
  const jobs = Array.isArray(body && body.jobs) ? [...body.jobs] : [];
  jobs.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  $("#jobs-empty").hidden = jobs.length > 0;
  clear($("#job-list")).append(
    ...jobs.map((job) =>
      jobCard(job, {
        onCancel: (j) =>
          guard(async () => {
            await cancelJob(j);
            say(`Job ${j.id} cancelled.`);
            await loadJobs();
          }),
      }),
    ),
  );
  if (jobs.some(isActive)) {
    state.jobsTimer = setTimeout(() => state.tab === "jobs" && guard(loadJobs), JOBS_REFRESH_MS);
  }
}

function wireJobs() {
  $("#jobs-refresh").addEventListener("click", () => guard(loadJobs));
}

// --- hit testing -----------------------------------------------------------------------------

const RETRIEVERS = ["dense", "sparse"];

function retrieverBadges(retrievers, mode) {
  const found = retrievers && typeof retrievers === "object" ? retrievers : {};
  const names = [...new Set([...(mode === "hybrid" ? RETRIEVERS : []), ...Object.keys(found)])];
  return h(
    "div",
    { class: "retrievers", testid: "hit-retrievers" },
    names.map((name) => {
      const r = found[name];
      if (!r) {
        return h(
          "span",
          { class: `badge retriever missing`, testid: "hit-retriever", dataset: { retriever: name }, title: `not in the ${name} retriever's results` },
          `${name} —`,
        );
      }
      return h(
        "span",
        {
          class: `badge retriever r-${name}`,
          testid: "hit-retriever",
          dataset: { retriever: name, rank: r.rank },
          title: `${name} retriever: rank ${r.rank}, score ${fmtScore(r.score)}`,
        },
        `${name} #${r.rank}`,
        h("span", { class: "sub" }, ` ${fmtScore(r.score)}`),
      );
    }),
  );
}

function scoreBadge(hit) {
  const relevance = typeof hit.relevance === "number" ? ` · relevance ${fmtScore(hit.relevance)}` : "";
  return h(
    "span",
    { class: "score", testid: "hit-score", title: "score: the ranking score of this mode; relevance: how close the match is (0–1)" },
    `score ${fmtScore(hit.score)}${relevance}`,
  );
}

function renderResults(body, { query, mode }) {
  const root = clear($("#search-results"));
  const hits = Array.isArray(body && body.hits) ? body.hits : [];
  const faqs = Array.isArray(body && body.faqs) ? body.faqs : [];
  root.append(
    h(
      "p",
      { class: "muted", testid: "search-summary" },
      `${plural(hits.length, "hit")}` +
        (faqs.length ? `, ${plural(faqs.length, "FAQ match")}` + "" : "") +
        ` · ${body.mode || mode}` +
        (typeof body.took_ms === "number" ? ` · ${Math.round(body.took_ms)} ms` : ""),
    ),
  );
  if (faqs.length) {
    root.append(
      h("h3", {}, "FAQ matches"),
      h(
        "ol",
        { class: "hits faq-hits" },
        faqs.map((f) =>
          h(
            "li",
            { class: "hit faq", testid: "faq-hit", dataset: { faqId: f.faq_id } },
            h(
              "div",
              { class: "hit-head" },
              h("span", { class: "badge badge-faq" }, "FAQ"),
              h("strong", { class: "hit-title", testid: "faq-hit-question" }, f.question),
              h("span", { class: "spacer" }),
              scoreBadge(f),
            ),
            retrieverBadges(f.retrievers, mode),
            h("div", { class: "faq-answer", testid: "faq-hit-answer" }, f.answer),
            h("p", { class: "hit-foot muted" }, h("code", {}, `faq ${f.faq_id}`)),
          ),
        ),
      ),
    );
  }
  root.append(h("h3", {}, "Chunks"));
  if (!hits.length) {
    root.append(h("p", { class: "empty", testid: "search-empty" }, "No chunk matched. Try another mode, a larger k, or fewer filters."));
    return;
  }
  root.append(
    h(
      "ol",
      { class: "hits" },
      hits.map((hit, i) =>
        h(
          "li",
          { class: "hit", testid: "hit", dataset: { docId: hit.doc_id, chunkId: hit.chunk_id } },
          h(
            "div",
            { class: "hit-head" },
            h("span", { class: "rank", "aria-label": `rank ${i + 1}` }, `#${i + 1}`),
            h("strong", { class: "hit-title", testid: "hit-title" }, hit.title || hit.doc_id),
            hit.section ? h("span", { class: "section muted", testid: "hit-section" }, `› ${hit.section}`) : null,
            h("span", { class: "spacer" }),
            scoreBadge(hit),
          ),
          retrieverBadges(hit.retrievers, mode),
          h("p", { class: "hit-text", testid: "hit-text" }, highlight(hit.text, query)),
          hit.context && hit.context !== hit.text
            ? h("details", { class: "context" }, h("summary", {}, "Context given to the generator"), h("div", { class: "context-text" }, hit.context))
            : null,
          h(
            "p",
            { class: "hit-foot muted" },
            h("code", { title: "doc_id" }, hit.doc_id),
            " · ",
            h("code", { title: "chunk_id" }, hit.chunk_id),
            fmtJson(hit.metadata) ? [" · ", h("code", { class: "meta" }, fmtJson(hit.metadata))] : null,
          ),
        ),
      ),
    ),
  );
}

function wireSearch() {
  const filtersInput = $("#search-filters");
  filtersInput.addEventListener("input", () => fieldError(filtersInput, $("#search-filters-error"), ""));
  onSubmit($("#search-form"), async () => {
    const kb = state.kb;
    const query = $("#search-query").value.trim();
    if (!query) {
      $("#search-query").focus();
      throw new Error("Type a query to test.");
    }
    const k = Number.parseInt($("#search-k").value, 10);
    if (!Number.isInteger(k) || k < 1 || k > 100) {
      $("#search-k").focus();
      throw new Error("k must be a whole number from 1 to 100.");
    }
    const filters = parseJsonObject(filtersInput.value, {});
    fieldError(filtersInput, $("#search-filters-error"), filters.error);
    if (filters.error) {
      filtersInput.focus();
      return;
    }
    const mode = $("#search-mode").value;
    const payload = { query, mode, k, filters: filters.value, faqs: $("#search-faqs").checked };
    const current = nextRequest("search");
    const body = await api("POST", `/v1/kbs/${seg(kb)}/search`, { json: payload });
    if (kb !== state.kb || !current()) return;
    renderResults(body || {}, { query, mode: (body && body.mode) || mode });
  });
}

// --- copilot ---------------------------------------------------------------------------------

let copilot = null; // {loadAssistants, loadHandoffs, loadFeedback}, set at start

// --- start -----------------------------------------------------------------------------------

async function start() {
  $("#notice-close").addEventListener("click", clearError);
  wireTabs();
  wireKey();
  wireKbs();
  wireDocs();
  wireFaqs();
  wireJobs();
  wireSearch();
  copilot = setupCopilot({ guard, say, clearError, confirmDialog, nextRequest, kbs: () => state.kbs });
  let saved = null;
  try {
    saved = localStorage.getItem(KB_STORAGE);
  } catch {
    /* storage disabled */
  }
  state.kb = saved;
  setKb(saved);
  const first = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "kbs";
  showTab(first, { refresh: false });
  await guard(loadKbs);
  if (first !== "kbs") refreshTab();
  document.body.dataset.ready = "true";
}

start();
