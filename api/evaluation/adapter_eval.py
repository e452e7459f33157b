"""`ragnet train lora` and `ragnet eval adapter`: an adapter against its base model, in numbers.

The evaluation reads the held-out side of the same hash split training used (agents/lora_data.py),
so it never scores an example the adapter was trained on. Domain: intents are scored by exact label
match, anything else by token F1 against the reply. General questions: base model, adapter forced on,
and routed (what the router does with each question: base model or adapter). All decoding is greedy,
batched, with a few new tokens.

Fair prompts: the adapter gets the short prompt it was trained on; the base model gets the same
prompt plus the list of every label in the data file (it cannot know the label names otherwise).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.lora_data import Example, Messages, TrainingDataError, balanced, file_sha256, read_examples
from agents.lora_training import LoraTrainConfig, train_lora

Log = Callable[[str], None]


def base_model_dir(settings: Any) -> Path:
    from agents.errors import ModelNotPrepared
    from agents.model_prep import generator_dir, is_prepared

    path = Path(settings.generator_path or generator_dir(settings.models_dir))
    if not is_prepared(path):
        raise ModelNotPrepared(f"the generator is not prepared in {path}; run `ragnet models prepare`")
    return path


def _data_row(role: str, path: Path, n: int, holdout: float) -> dict[str, Any]:
    return {
        "role": role,
        "file": path.name,
        "sha256": file_sha256(path),
        "examples": n,
        "note": f"the train side of a {holdout:.0%} id-hash holdout",
    }


def train_lora_command(settings: Any, args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """`ragnet train lora`: read and split the files, train, report where the adapter went."""
    from agents.generation.transformers_backend import configure_torch

    if not args.name:
        raise TrainingDataError("train lora needs --name NAME")
    if args.data is None or not Path(args.data).is_file():
        raise TrainingDataError(f"train lora needs --data FILE (a JSON Lines file); got {args.data}")
    if not 0.0 <= args.general_share < 1.0 or not 0.0 <= args.holdout < 1.0:
        raise TrainingDataError("--general-share and --holdout must be within [0, 1)")
    base = base_model_dir(settings)
    configure_torch(settings.torch_threads)
    domain = read_examples(args.data, holdout=args.holdout)
    if args.limit:
        domain = balanced(domain, args.limit, args.seed)
    general = read_examples(args.general, holdout=args.holdout) if args.general else []
    data = [_data_row("domain", args.data, len(domain), args.holdout)]
    if args.general:
        data.append(_data_row("general (pool)", args.general, len(general), args.holdout))
    config = LoraTrainConfig(
        r=args.r,
        lr=args.lr if args.lr is not None else LoraTrainConfig.lr,
        epochs=args.epochs or 1,
        batch_size=args.batch_size,
        max_len=args.max_len,
        general_share=args.general_share,
        seed=args.seed,
        save_every=args.save_every,
        layers=args.layers,
    )
    out = args.out or settings.data_dir / "adapters" / args.name
    domains = [d.strip() for d in (args.domains or args.name).split(",") if d.strip()]
    result = train_lora(
        base,
        domain,
        general,
        out,
        config,
        log,
        name=args.name,
        domains=domains,
        description=args.description,
        data=data,
        holdout=args.holdout,
        init_adapter=args.init,
    )
    entry = json.dumps([{"name": args.name, "path": str(out), "domains": domains}])
    log(
        f"to serve it: RAGNET_ADAPTERS='{entry}'; "
        f"to measure it: ragnet eval adapter --adapter {out} --data FILE"
    )
    return result


# ---- evaluation ---------------------------------------------------------------------------------

#: New tokens per reply: a BANKING77 label is at most ~12 tokens; general answers are short phrases.
MAX_NEW_TOKENS = 16
BATCH = 8


def _holdout_for(path: Path, meta: dict[str, Any], given: float | None, log: Log) -> float:
    """The share to score: as given; else the adapter's own holdout when it was trained on this very
    file (same sha256); else the whole file (the adapter never saw it)."""
    if given is not None:
        return given
    digest = file_sha256(path)
    if any(row.get("sha256") == digest for row in meta.get("data", [])):
        share = float(meta.get("holdout", 0.0))
        if share <= 0:
            raise TrainingDataError(f"the adapter was trained on all of {path}; evaluate on another file")
        log(f"{path.name}: the adapter was trained on this file; scoring its held-out {share:.0%}")
        return share
    log(f"{path.name}: not a file the adapter was trained on; scoring all of it")
    return 1.0


def _label_of(text: str) -> str:
    """A fair reading of a label reply: first line, quotes and a trailing period off, spaces as _."""
    first = (text.strip().splitlines() or [""])[0]
    return first.strip(" `'\".:*").lower().replace(" ", "_")


def _intent_label_prompt(example: Example, labels: Sequence[str]) -> Messages:
    """The base model's prompt: the adapter's prompt plus every label name (it cannot guess them)."""
    msgs = example.prompt()
    msgs[0] = {"role": "system", "content": f"{msgs[0]['content']} The labels: {', '.join(labels)}."}
    return msgs


def _generate(gen: Any, prompts: Sequence[Messages], adapter: str | None) -> list[Any]:
    """Greedy batched replies from the serving backend itself (shorter prompts batched together)."""
    from agents.generation.base import GenerationRequest

    order = sorted(range(len(prompts)), key=lambda i: sum(len(m["content"]) for m in prompts[i]))
    out: list[Any] = [None] * len(prompts)
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        requests = [
            GenerationRequest(
                messages=prompts[i],  # type: ignore[arg-type]  # role/content dicts: ChatMessage shape
                max_tokens=MAX_NEW_TOKENS,
                repetition_penalty=1.0,
                adapter=adapter,
            )
            for i in idx
        ]
        for i, generation in zip(idx, gen.generate_batch(requests), strict=True):
            out[i] = generation
    return out


def _texts(generations: Sequence[Any]) -> list[str]:
    return [g.text.strip() for g in generations]


def _router(services: Any, spec: Any) -> tuple[Callable[[str], bool] | None, str]:
    """(text -> routed to this adapter?, how) from the service's router over this one adapter."""
    from agents.adapters import AdapterRegistry
    from agents.routing import BaseOnlyRouter

    router = services.router_for(AdapterRegistry((spec,)))
    if isinstance(router, BaseOnlyRouter):
        return None, f"off ({router.reason}); routed = base model"

    def to_adapter(text: str) -> bool:
        return router.route(text).adapters.get(spec.name, 0.0) >= 0.5

    return to_adapter, f"classifier (threshold {services.settings.router_threshold})"


def _user_text(example: Example) -> str:
    """What the router reads: the question (without its context) or the user's message."""
    user = [c for r, c in example.messages if r == "user"][-1]
    return user.rsplit("Question: ", 1)[-1] if user.startswith("Context: ") else user


def _score(example: Example, prediction: str) -> float:
    from agents.answer_text import token_f1

    if example.label is not None:
        return float(_label_of(prediction) == example.label.lower())
    golds = example.answers or (example.reply,)
    return max(token_f1(prediction, g) for g in golds)


def eval_adapter(
    settings: Any,
    services: Any,
    adapter: Path,
    data: Path,
    general: Path | None = None,
    *,
    limit: int | None = None,
    holdout: float | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Base model vs adapter on held-out domain examples; base vs adapter vs routed on general ones."""
    from agents.adapters import AdapterSpec, check_adapter

    started = time.perf_counter()
    base = base_model_dir(settings)
    check_adapter(adapter, base)
    meta_file = adapter / "ragnet_adapter.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    spec = AdapterSpec(meta.get("name", adapter.name), adapter, tuple(meta.get("domains", ())))
    domain = read_examples(data, holdout=_holdout_for(data, meta, holdout, log), side="held")
    domain = balanced(domain, limit, 13) if limit else domain
    labels = sorted({e.label for e in read_examples(data) if e.label})
    from agents.generation.transformers_backend import TransformersGenerator

    # the generator as served (RAGNET_GENERATOR_QUANTIZE), so the numbers are what users get
    gen = TransformersGenerator(
        base, quantize=settings.generator_quantize, prefill=settings.generator_prefill, adapters=[spec]
    )
    base_prompts = [_intent_label_prompt(e, labels) if e.label else e.prompt() for e in domain]
    log(f"domain: {len(domain)} held-out examples, base model then adapter")
    base_gens = _generate(gen, base_prompts, None)
    adapter_gens = _generate(gen, [e.prompt() for e in domain], spec.name)
    base_out, adapter_out = _texts(base_gens), _texts(adapter_gens)
    route, router_how = _router(services, spec)
    routed = [route(_user_text(e)) for e in domain] if route else [False] * len(domain)
    base_s = [_score(e, p) for e, p in zip(domain, base_out, strict=True)]
    adapter_s = [_score(e, p) for e, p in zip(domain, adapter_out, strict=True)]
    metric = "acc" if all(e.label for e in domain) else "f1"
    result: dict[str, Any] = {
        "adapter": spec.name,
        "n": len(domain),
        "metric": "exact label match" if metric == "acc" else "token F1",
        f"base_{metric}": _mean(base_s),
        f"adapter_{metric}": _mean(adapter_s),
        f"routed_{metric}": _mean([a if r else b for a, b, r in zip(adapter_s, base_s, routed, strict=True)]),
        "domain_routed_to_adapter": _mean([float(r) for r in routed]),
        "base_prompt_tokens": _mean([g.prompt_tokens for g in base_gens], 1),
        "adapter_prompt_tokens": _mean([g.prompt_tokens for g in adapter_gens], 1),
        "router": router_how,
        "quantize": settings.generator_quantize,
        "prefill": gen.prefill,
    }
    if general is not None:
        questions = read_examples(general, holdout=_holdout_for(general, meta, holdout, log), side="held")
        questions = balanced(questions, limit, 13) if limit else questions
        log(f"general: {len(questions)} held-out examples, base model then adapter")
        g_base = [
            _score(e, p)
            for e, p in zip(
                questions, _texts(_generate(gen, [e.prompt() for e in questions], None)), strict=True
            )
        ]
        g_adapter = [
            _score(e, p)
            for e, p in zip(
                questions, _texts(_generate(gen, [e.prompt() for e in questions], spec.name)), strict=True
            )
        ]
        g_routed = [route(_user_text(e)) for e in questions] if route else [False] * len(questions)
        result.update(
            {
                "general_n": len(questions),
                "general_base_f1": _mean(g_base),
                "general_adapter_f1": _mean(g_adapter),
                "general_routed_f1": _mean(
                    [a if r else b for a, b, r in zip(g_adapter, g_base, g_routed, strict=True)]
                ),
                "general_routed_to_adapter": _mean([float(r) for r in g_routed]),
            }
        )
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _mean(values: Sequence[float], digits: int = 4) -> float:
    return round(sum(values) / len(values), digits) if values else 0.0
