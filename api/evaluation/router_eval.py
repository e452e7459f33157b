"""`ragnet eval router`, `ragnet train router` and `ragnet data router-split`.

Labelled files are named ``FILE[=LABEL]``, comma-separated. Rows are read from the shared/data
formats: intents (``{"id","text","label"}``), questions (``questions.jsonl``, "question"), FAQ
(``faqs.jsonl`` "question", ``queries.jsonl`` "query") and persona dialogues (every turn's "text").
``=LABEL`` gives every row of that file the label (``intents/banking77/train.jsonl=banking`` makes 77
intents one domain); without it a row keeps its own "label", and a row with none is "general".

Accuracy counts what the router would do: the top label when its probability clears the threshold,
else the base model, i.e. "general". A domain example below the threshold therefore counts as wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.adapters import AdapterRegistry
from agents.router_training import embed_all, train_router
from agents.routing import GENERAL, ClassifierRouter, EmbedFn, RouterModel
from api.evaluation.metrics import percentile
from retrieval.errors import IngestError

Log = Callable[[str], None]


@dataclass(frozen=True)
class Labelled:
    id: str
    text: str
    label: str
    #: Rows of one group (a passage's questions, a FAQ and its paraphrases, a dialogue's turns) fall
    #: on the same side of a split, so the test set holds no near-copy of a training row.
    group: str


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"{path}:{n} is not JSON: {exc}") from exc
                if isinstance(row, dict):
                    yield row


def read_labelled(path: Path, label: str | None = None) -> list[Labelled]:
    """The labelled texts of one file (formats: module docstring)."""
    if not path.is_file():
        raise IngestError(f"{path} does not exist")
    out: list[Labelled] = []
    for i, row in enumerate(_rows(path)):
        rid = str(row.get("id", i))
        own = label or str(row.get("label") or GENERAL)
        if "turns" in row:  # a persona dialogue: every turn is a message
            for j, turn in enumerate(row["turns"]):
                if str(turn.get("text", "")).strip():
                    out.append(Labelled(f"{rid}:{j}", turn["text"].strip(), own, rid))
            continue
        text = row.get("text") or row.get("query") or row.get("question")
        if not isinstance(text, str) or not text.strip():
            continue
        if "query" in row:
            group = str(row.get("faq_id", rid))
        elif "question" in row and row.get("supporting_ids"):
            group = str(row["supporting_ids"][0])
        else:
            group = rid
        out.append(Labelled(rid, text.strip(), own, group))
    return out


def parse_spec(spec: str) -> list[tuple[Path, str | None]]:
    """``a.jsonl=banking,b.jsonl`` -> [(a.jsonl, "banking"), (b.jsonl, None)]."""
    items: list[tuple[Path, str | None]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, label = part.rpartition("=")
        if eq and label and "/" not in label:
            items.append((Path(name), label))
        else:
            items.append((Path(part), None))
    if not items:
        raise IngestError("no labelled files given (FILE[=LABEL], comma-separated)")
    return items


def read_spec(spec: str) -> list[Labelled]:
    return [row for path, label in parse_spec(spec) for row in read_labelled(path, label)]


# --- the public banking-vs-general split ---------------------------------------------------------
#: (folder/file under the data folder, label, licence). LoCoMo is CC BY-NC and evaluation-only:
#: it goes to the test side only, never into a shipped model.
SPLIT_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("intents/banking77/train.jsonl", "banking", "BANKING77, CC BY 4.0"),
    ("rc/xquad_en/questions.jsonl", GENERAL, "XQuAD, CC BY-SA 4.0"),
    ("rc/cmrc2018_trial/questions.jsonl", GENERAL, "CMRC 2018, CC BY-SA 4.0"),
    ("multihop/hotpotqa_train100/questions.jsonl", GENERAL, "HotpotQA, CC BY-SA 4.0 (via HippoRAG, MIT)"),
    ("multihop/musique_train100/questions.jsonl", GENERAL, "MuSiQue, CC BY 4.0 (via HippoRAG, MIT)"),
    ("faq/covid_faq_en/faqs.jsonl", GENERAL, "deepset COVID-QA, Apache-2.0"),
    ("faq/covid_faq_en/queries.jsonl", GENERAL, "deepset COVID-QA, Apache-2.0"),
    ("persona/synthetic_persona_chat_valid/dialogues.jsonl", GENERAL, "Synthetic-Persona-Chat, CC BY 4.0"),
    ("memory/locomo_conv0-2/questions.jsonl", GENERAL, "LoCoMo, CC BY-NC 4.0 (test only)"),
)
TEST_ONLY = ("memory/",)
#: Why 1 in 5: ~1,100 general test messages, enough for a 95% interval of about +-1 point.
TEST_SHARE = 5
#: Why a cap on the general sources: persona chat has 5,669 turns; 1,200 keeps it from outweighing the
#: question sets. Banking is not capped (it is down-sampled to the general count instead).
PER_SOURCE = 1200


def _hash(*parts: str) -> int:
    return int(hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12], 16)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def build_split(data: Path) -> tuple[list[Labelled], list[Labelled], list[dict[str, Any]]]:
    """(train, test, per-source counts): by hash of each row's group, 1 in TEST_SHARE to test; at most
    PER_SOURCE rows a general source (lowest hash first); texts deduplicated, test against train too; banking
    rows down-sampled (lowest hash first) to as many as the general rows on each side."""
    train: list[Labelled] = []
    test: list[Labelled] = []
    seen: set[str] = set()
    counts: list[dict[str, Any]] = []
    picked: list[tuple[str, Labelled, bool]] = []
    for rel, label, licence in SPLIT_SOURCES:
        path = data / rel
        if not path.is_file():
            raise IngestError(f"{path} is missing: --data must be the shared/data folder")
        rows = sorted(read_labelled(path, label), key=lambda r: _hash("pick", rel, r.id))
        stem = rel.removesuffix(".jsonl")
        for r in rows if label != GENERAL else rows[:PER_SOURCE]:
            to_test = rel.startswith(TEST_ONLY) or _hash("split", rel, r.group) % TEST_SHARE == 0
            picked.append((rel, Labelled(f"{stem}:{r.id}", r.text, r.label, r.group), to_test))
        counts.append({"source": stem, "label": label, "licence": licence})
    # train rows claim their texts first, so a duplicate across the sides is dropped from test
    for side in (False, True):
        for _rel, row, to_test in picked:
            if to_test == side and _key(row.text) not in seen:
                seen.add(_key(row.text))
                (test if side else train).append(row)
    train, test = _balance(train), _balance(test)
    for c in counts:
        prefix = c["source"] + ":"
        c["train"] = sum(r.id.startswith(prefix) for r in train)
        c["test"] = sum(r.id.startswith(prefix) for r in test)
    return train, test, counts


def _balance(rows: list[Labelled]) -> list[Labelled]:
    general = [r for r in rows if r.label == GENERAL]
    others = sorted((r for r in rows if r.label != GENERAL), key=lambda r: _hash("balance", r.id))
    return others[: len(general)] + general


def write_split(data: Path, out: Path) -> dict[str, Any]:
    """train.jsonl / test.jsonl (intents format) and split.json (sources, licences, counts) in ``out``."""
    train, test, counts = build_split(data)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        tmp = out / f"{name}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(
                    json.dumps({"id": r.id, "text": r.text, "label": r.label}, ensure_ascii=False) + "\n"
                )
        tmp.replace(out / name)
    summary = {
        "train": len(train),
        "test": len(test),
        "labels": {
            "train": dict(sorted(Counter(r.label for r in train).items())),
            "test": dict(sorted(Counter(r.label for r in test).items())),
        },
        "sources": counts,
        "out": str(out),
    }
    (out / "split.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return summary


# --- evaluation and training -----------------------------------------------------------------------
def evaluate(
    model: RouterModel, embed: EmbedFn, rows: Sequence[Labelled], threshold: float
) -> dict[str, Any]:
    """Route every row on its own (one embedder call each, as a request would) and score the labels."""
    if not rows:
        raise IngestError("the test set is empty")
    router = ClassifierRouter(model, embed, AdapterRegistry(), threshold)
    router.route(rows[0].text)  # warm-up: the first call pays for lazy initialisation
    preds: list[str] = []
    tops: list[str] = []
    below = 0
    ms: list[float] = []
    for r in rows:
        route = router.route(r.text)
        ms.append(route.ms)
        tops.append(route.label)
        confident = route.scores[route.label] >= threshold
        below += not confident
        preds.append(route.label if confident else GENERAL)
    gold = [r.label for r in rows]
    labels = sorted(set(model.labels) | set(gold))
    per_label: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(p == g == label for p, g in zip(preds, gold, strict=True))
        n_pred, n_gold = preds.count(label), gold.count(label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "n": n_gold,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
        }
    n = len(rows)
    return {
        "n": n,
        "accuracy": round(sum(p == g for p, g in zip(preds, gold, strict=True)) / n, 4),
        "macro_f1": round(sum(v["f1"] for v in per_label.values()) / len(per_label), 4),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "threshold": threshold,
        "base_rate": round(below / n, 4),
        "accuracy_top1": round(sum(t == g for t, g in zip(tops, gold, strict=True)) / n, 4),
        "labels": per_label,
    }


def fit_files(
    embed: EmbedFn, embedder: str, train_spec: str, *, seed: int, log: Log
) -> tuple[RouterModel, dict[str, Any]]:
    rows = read_spec(train_spec)
    if not rows:
        raise IngestError(f"no labelled texts in {train_spec}")
    log(f"router: embedding {len(rows)} training texts with {embedder}")
    started = time.perf_counter()
    vectors = embed_all([r.text for r in rows], embed, log)
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    model = train_router(
        [r.text for r in rows], [r.label for r in rows], embed, embedder=embedder, seed=seed, vectors=vectors
    )
    info = {
        "train_n": len(rows),
        "train_labels": dict(sorted(Counter(r.label for r in rows).items())),
        "embed_seconds": round(embed_s, 1),
        "train_seconds": round(time.perf_counter() - started, 2),
        "embedder": embedder,
    }
    return model, info


def eval_router(
    embed: EmbedFn, embedder: str, train_spec: str, test_spec: str, threshold: float, *, seed: int, log: Log
) -> dict[str, Any]:
    """Train on ``train_spec``, route every text of ``test_spec``; the JSON `ragnet eval router` prints."""
    model, info = fit_files(embed, embedder, train_spec, seed=seed, log=log)
    test = read_spec(test_spec)
    log(f"router: routing {len(test)} test texts one by one")
    return {**evaluate(model, embed, test, threshold), **info}


def train_router_files(
    embed: EmbedFn,
    embedder: str,
    train_spec: str,
    out: Path,
    *,
    test_spec: str | None,
    threshold: float,
    seed: int,
    log: Log,
) -> dict[str, Any]:
    """Train, evaluate on ``test_spec`` when given, and write the checkpoint with its data card."""
    model, info = fit_files(embed, embedder, train_spec, seed=seed, log=log)
    result: dict[str, Any] = dict(info)
    if test_spec:
        log("router: evaluating on the held-out set")
        result["test"] = evaluate(model, embed, read_spec(test_spec), threshold)
    model.save(out, _card(model, train_spec, test_spec, result, threshold))
    log(f"wrote {out}")
    return {**result, "labels": list(model.labels), "out": str(out)}


def _names(spec: str) -> str:
    """A spec's files by their last two path parts: the card does not record local folders."""
    return ",".join(
        "/".join(path.parts[-2:]) + (f"={label}" if label else "") for path, label in parse_spec(spec)
    )


def _split_info(train_spec: str) -> dict[str, Any] | None:
    first = parse_spec(train_spec)[0][0]
    path = first.parent / "split.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _card(
    model: RouterModel, train_spec: str, test_spec: str | None, result: dict[str, Any], threshold: float
) -> str:
    c = model.config
    lines = [
        "# Router — data card",
        "",
        f"Trained {dt.date.today().isoformat()} by `ragnet train router`: multinomial logistic regression "
        f"(class-balanced, L2 {c.l2}, full-batch L-BFGS, seed {c.seed}) on {c.embedder} query vectors "
        f"({c.dim} dimensions, standardised). Labels: {', '.join(c.labels)}. {c.train_examples} training "
        f"texts ({', '.join(f'{k} {v}' for k, v in result['train_labels'].items())}); "
        f"{result['embed_seconds']} s embedding, {result['train_seconds']} s fitting on CPU.",
        "",
    ]
    split = _split_info(train_spec)
    if split:
        lines += [
            "Data: `ragnet data router-split` over the public sets (hash split by passage / FAQ / dialogue; "
            "texts deduplicated; banking down-sampled to as many messages as the general ones on each side). "
            "Rebuild: `ragnet data router-split --data ../shared/data --out DIR && ragnet train router "
            "--train DIR/train.jsonl --test DIR/test.jsonl --out agents/models/router`.",
            "",
            "| source | label | train | test | licence |",
            "|---|---|---|---|---|",
            *(
                f"| {s['source']} | {s['label']} | {s['train']} | {s['test']} | {s['licence']} |"
                for s in split["sources"]
            ),
            "",
            "Known limits: banking77 is English only and the general side mixes Chinese (CMRC 2018) with "
            "English, so language alone is a cue for Chinese; no banking example is in Chinese. Short "
            "context-free banking77 messages ('What about my children?') and personal questions banking77 "
            "also asks ('How old are you?', its age-limit intent) are the typical errors.",
            "",
        ]
    else:
        lines += [f"Training files: `{_names(train_spec)}`.", ""]
    test = result.get("test")
    if test:
        per = "; ".join(
            f"{k}: precision {v['precision']}, recall {v['recall']} (n {v['n']})"
            for k, v in test["labels"].items()
        )
        lines += [
            "## Held-out evaluation",
            "",
            f"`{_names(test_spec or '')}` (never trained on), threshold {threshold}: n {test['n']}, accuracy "
            f"{test['accuracy']}, macro-F1 {test['macro_f1']}, top-1 accuracy without the threshold "
            f"{test['accuracy_top1']}, routed to base by the threshold {test['base_rate']}; routing "
            f"latency (one embedder call + the classifier, CPU) p50 {test['p50_ms']} ms, "
            f"p95 {test['p95_ms']} ms.",
            f"Per label: {per}.",
            "",
            "Accuracy counts a domain message below the threshold as wrong (it goes to the base model).",
            "",
        ]
    lines += [
        "The weights hold no text of the data: labels x dim coefficients, a bias, and the features' "
        "mean and scale.",
        "",
    ]
    return "\n".join(lines)
