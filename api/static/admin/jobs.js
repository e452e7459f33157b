// Jobs: one card per job (status, done/total, failures, cancel), and a watcher that polls a job
// every second until it is done, failed or cancelled.

import { api, seg } from "./api.js";
import { clear, fmtDate, h } from "./dom.js";

export const TERMINAL = new Set(["done", "failed", "cancelled"]);
export const isActive = (job) => job && !TERMINAL.has(job.status);

const KIND_LABEL = { documents: "Document upload", faqs: "FAQ import" };

/** A job card. onCancel(job) is called by its Cancel button (shown while queued or running). */
export function jobCard(job, { onCancel } = {}) {
  const total = Number(job.total) || 0;
  const done = Number(job.done) || 0;
  const failures = Array.isArray(job.failures) ? job.failures : [];
  const progress = h("progress", { max: Math.max(total, 1), testid: "job-progress-bar" });
  if (total > 0) progress.value = Math.min(done, total);
  else if (job.status === "done") progress.value = 1;
  // else: no value -> indeterminate, while the server counts the files

  return h(
    "article",
    {
      class: `job status-${job.status}`,
      testid: "job",
      dataset: { jobId: job.id, status: job.status },
      "aria-label": `${KIND_LABEL[job.kind] || job.kind} job ${job.id}: ${job.status}`,
    },
    h(
      "div",
      { class: "job-head" },
      h("span", { class: `badge badge-${job.status}`, testid: "job-status" }, job.status),
      h("strong", {}, KIND_LABEL[job.kind] || job.kind || "Job"),
      h("code", { class: "muted", title: "Job id" }, job.id),
      job.kb ? h("span", { class: "muted" }, `in ${job.kb}`) : null,
      h("span", { class: "spacer" }),
      h("time", { class: "muted", datetime: job.updated_at || job.created_at }, fmtDate(job.updated_at || job.created_at)),
    ),
    h(
      "div",
      { class: "progress-line" },
      progress,
      h("span", { testid: "job-progress" }, total > 0 ? `${done}/${total}` : `${done}/?`),
      failures.length ? h("span", { class: "bad" }, `${failures.length} failed`) : null,
      isActive(job) && onCancel
        ? h("button", { type: "button", class: "small", testid: "job-cancel", onclick: () => onCancel(job) }, "Cancel")
        : null,
    ),
    job.message ? h("p", { class: "job-message", testid: "job-message" }, job.message) : null,
    failures.length
      ? h(
          "details",
          { class: "failures", testid: "job-failures", open: failures.length <= 5 },
          h("summary", {}, `${failures.length} file${failures.length === 1 ? "" : "s"} not ingested`),
          h(
            "ul",
            {},
            failures.map((f) =>
              h("li", { testid: "job-failure" }, h("code", {}, f.source || "?"), " — ", f.reason || "unknown reason"),
            ),
          ),
        )
      : null,
  );
}

export async function cancelJob(job) {
  return api("POST", `/v1/jobs/${seg(job.id)}/cancel`);
}

/**
 * Show `job` in `container` and poll it every `interval` ms until it ends.
 * Returns a stop() function. onUpdate(job) runs after every poll; onEnd(job) once at the end;
 * onError(err) when polling gives up.
 */
export function watchJob(container, job, { interval = 1000, onUpdate, onEnd, onError } = {}) {
  let stopped = false;
  let timer = null;
  let misses = 0;

  const render = (current) => {
    clear(container).append(
      jobCard(current, {
        onCancel: async (j) => {
          try {
            render(await cancelJob(j));
          } catch (err) {
            if (onError) onError(err);
          }
        },
      }),
    );
  };

  const tick = async (current) => {
    if (stopped) return;
    render(current);
    if (onUpdate) onUpdate(current);
    if (!isActive(current)) {
      stopped = true;
      if (onEnd) onEnd(current);
      return;
    }
    timer = setTimeout(poll, interval);
  };

  const poll = async () => {
    if (stopped) return;
    try {
      const next = await api("GET", `/v1/jobs/${seg(job.id)}`);
      misses = 0;
      await tick(next);
    } catch (err) {
      misses += 1;
      // A network blip is retried; a refusal (401/403/404) or 10 misses in a row end the watch.
      if (err.status === 0 && misses < 10 && !stopped) {
        timer = setTimeout(poll, interval * 2);
      } else {
        stopped = true;
        if (onError) onError(err);
      }
    }
  };

  tick(job);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
