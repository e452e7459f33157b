"""Training a LoRA adapter for the generator: chat examples in, a PEFT adapter folder out (CPU).

The data formats, the hold-out split and the general-data mix are agents/lora_data.py's. Loss is on
the assistant reply only (its tokens up to and including the end-of-turn token), logits are computed
for those positions only (the 0.5B model's 152k-word output layer is the most expensive matmul on
CPU), and only the top ``layers`` decoder layers are adapted, so the backward pass stops there.
Seeds are fixed; every ``save_every`` steps the adapter, the optimiser, the step, the RNG and the
data order go to ``OUT/.partial/state.pt`` (temp file + rename), and a rerun with the same
arguments continues from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.adapters import NAME_PATTERN
from agents.lora_data import Example, TrainingDataError, file_sha256, mix

Log = Callable[[str], None]


@dataclass(frozen=True)
class LoraTrainConfig:
    r: int = 8  # 8-16 is the usual range for a narrow task; 8 keeps the file ~1 MB
    alpha: int | None = None  # None: 2r, the common scaling
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 3e-4  # LoRA tolerates a higher rate than full fine-tuning; a few hundred steps here
    epochs: int = 1
    batch_size: int = 8
    max_len: int = 192  # tokens; longer examples are skipped (and counted)
    general_share: float = 0.3
    seed: int = 13
    save_every: int = 20  # steps between resumable snapshots
    layers: int | None = None  # adapt only the top N decoder layers (None: all)
    warmup: int = 10  # steps of linear warm-up, then linear decay to 10%
    tokens_per_micro_batch: int = 1024  # padding budget of one forward pass (length-grouped)

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else 2 * self.r


# ---- tokens -------------------------------------------------------------------------------------


def encode(tokenizer: Any, example: Example, max_len: int) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with -100 on the prompt: loss on the reply and its end-of-turn token."""
    prompt = tokenizer.apply_chat_template(example.prompt(), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(example.chat(), tokenize=False)
    if not full.startswith(prompt):
        raise TrainingDataError("the chat template does not extend the prompt with the reply; cannot mask it")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if eos is None or eos == tokenizer.unk_token_id:
        eos = tokenizer.eos_token_id
    if eos in r_ids:
        r_ids = r_ids[: r_ids.index(eos) + 1]
    ids = p_ids + r_ids
    if len(ids) > max_len:
        return None
    return ids, [-100] * len(p_ids) + r_ids


def _micro_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped by length so that (longest x count) stays within ``budget`` tokens."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: lengths[j]):
        if current and lengths[i] * (len(current) + 1) > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


# ---- training -----------------------------------------------------------------------------------


def _fingerprint(
    config: LoraTrainConfig, base_dir: Path, encoded: Sequence[tuple[list[int], list[int]]]
) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps({k: v for k, v in asdict(config).items() if k != "save_every"}, sort_keys=True).encode()
    )
    h.update((base_dir / "config.json").read_bytes())
    for ids, labels in encoded:
        h.update(json.dumps([ids, labels]).encode())
    return h.hexdigest()[:16]


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _lr_at(step: int, total: int, config: LoraTrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    done = (step - config.warmup) / max(1, total - config.warmup)
    return config.lr * (1.0 - 0.9 * done)


def _eta(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _card(meta: dict[str, Any]) -> str:
    rows = [f"| {d['role']} | `{d['file']}` | {d['examples']} | {d.get('note', '')} |" for d in meta["data"]]
    cfg, init = meta["config"], meta.get("init_adapter")
    return "\n".join(
        [
            f"# LoRA adapter `{meta['name']}` — data card",
            "",
            meta["description"],
            "",
            f"Base model: {meta['base_model']['name']} (hidden_size {meta['base_model']['hidden_size']}, "
            f"{meta['base_model']['num_hidden_layers']} layers). Trained {meta['trained']} by "
            f"`ragnet train lora`: LoRA r {cfg['r']}, alpha {cfg['lora_alpha']}, dropout {cfg['dropout']}, "
            "on "
            f"{', '.join(cfg['target_modules'])} of the top {cfg['layers_adapted']} layers; lr {cfg['lr']}, "
            f"batch {cfg['batch_size']}, {cfg['epochs']} epoch(s), max {cfg['max_len']} tokens, seed "
            f"{cfg['seed']}. {meta['steps']} steps in {meta['seconds']:.0f} s on CPU; loss "
            f"{meta['first_loss']} -> {meta['last_loss']} (reply tokens only).",
            "",
            *(
                [
                    f"Continued from adapter `{init['name']}` ({init['steps']} steps, "
                    f"{init['seconds']:.0f} s; its data in `ragnet_adapter.json`): the numbers above are "
                    "this stage's.",
                    "",
                ]
                if init
                else []
            ),
            "| role | file | examples | note |",
            "|---|---|---|---|",
            *rows,
            "",
            f"General examples make up {cfg['general_share']:.0%} of the mix (so ordinary questions keep "
            f"their base-model answers). Held out: the {meta['holdout']:.0%} of each file whose id hash "
            "falls below the share (`ragnet eval adapter` scores that side).",
            "",
        ]
    )


def train_lora(
    base_dir: Path,
    domain_examples: Sequence[Example],
    general_examples: Sequence[Example],
    out_dir: Path,
    config: LoraTrainConfig | None = None,
    log: Log = print,
    *,
    name: str | None = None,
    domains: Sequence[str] = (),
    description: str = "",
    data: Sequence[dict[str, Any]] = (),
    holdout: float = 0.0,
    max_steps: int | None = None,
    init_adapter: Path | None = None,
) -> dict[str, Any]:
    """Train (or continue training) an adapter into ``out_dir``; returns a summary.

    ``max_steps`` stops after that many steps with the snapshot saved (a rerun continues).
    ``init_adapter``: start from that adapter's weights (same r and layers) instead of PEFT's init,
    to train an adapter further on more data."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = config or LoraTrainConfig()
    name = name or out_dir.name
    if not re.match(NAME_PATTERN, name):
        raise TrainingDataError(f"adapter name {name!r} must match {NAME_PATTERN}")
    if not domain_examples:
        raise TrainingDataError("no domain examples to train on")
    base_cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    n_layers = int(base_cfg["num_hidden_layers"])
    top = min(config.layers or n_layers, n_layers)

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    examples = mix(domain_examples, general_examples, config.general_share, config.seed)
    n_general = len(examples) - len(domain_examples)
    if not general_examples:
        log("no general data given (--general): nothing general is mixed in")
    encoded, skipped = [], 0
    for example in examples:
        got = encode(tokenizer, example, config.max_len)
        if got is None:
            skipped += 1
        else:
            encoded.append(got)
    if not encoded:
        raise TrainingDataError(f"every example is longer than max_len {config.max_len} tokens")
    log(
        f"{len(domain_examples)} domain + {n_general} general examples"
        + (f", {skipped} skipped (longer than {config.max_len} tokens)" if skipped else "")
    )
    fingerprint = _fingerprint(config, base_dir, encoded)
    if init_adapter is not None:
        fingerprint = hashlib.sha256(
            (fingerprint + file_sha256(init_adapter / "adapter_model.safetensors")).encode()
        ).hexdigest()[:16]
    meta_file = out_dir / "ragnet_adapter.json"
    if meta_file.is_file() and (out_dir / "adapter_model.safetensors").is_file():
        done = json.loads(meta_file.read_text(encoding="utf-8"))
        if done.get("fingerprint") == fingerprint:
            log(f"{out_dir} already holds this adapter (same data and settings): nothing to do")
            return {**_summary(done, out_dir), "resumed_from": done["steps"]}

    rng = random.Random(config.seed)
    order: list[list[int]] = []
    for _ in range(config.epochs):
        perm = list(range(len(encoded)))
        rng.shuffle(perm)
        order.extend(perm[i : i + config.batch_size] for i in range(0, len(perm), config.batch_size))
    total = len(order)

    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=list(range(n_layers - top, n_layers)),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    if init_adapter is not None:
        from safetensors.torch import load_file

        weights = {
            k: v.float() for k, v in load_file(str(init_adapter / "adapter_model.safetensors")).items()
        }
        try:
            loaded = set_peft_model_state_dict(peft_model, weights)
            extra = list(getattr(loaded, "unexpected_keys", []))
        except RuntimeError as exc:  # a shape mismatch: another r or base model
            raise TrainingDataError(f"{init_adapter} does not fit this adapter's shape: {exc}") from exc
        if extra:
            raise TrainingDataError(
                f"{init_adapter} has weights this adapter lacks (other layers?): {extra[:2]}"
            )
        log(f"starting from the weights of {init_adapter}")
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    causal: Any = peft_model.get_base_model()
    decoder, head = causal.get_decoder(), causal.get_output_embeddings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    partial = out_dir / ".partial" / "state.pt"
    step, losses, spent = 0, [], 0.0
    if partial.is_file():
        state = torch.load(partial, weights_only=False)
        if state.get("fingerprint") == fingerprint and state.get("order") == order:
            set_peft_model_state_dict(peft_model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            step, losses, spent = state["step"], state["losses"], state["seconds"]
            log(f"resuming from step {step}/{total} ({partial})")
        else:
            log(f"discarding {partial}: it was made with other data or settings")
    resumed_from = step

    def snapshot() -> None:
        _atomic_save(
            {
                "fingerprint": fingerprint,
                "order": order,
                "step": step,
                "adapter": get_peft_model_state_dict(peft_model),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "losses": losses,
                "seconds": spent,
            },
            partial,
        )

    peft_model.train()
    started, seen = time.perf_counter(), 0
    while step < total:
        if max_steps is not None and step >= max_steps:
            snapshot()
            log(f"stopped at step {step}/{total} (max_steps); rerun to continue")
            return {"name": name, "out": str(out_dir), "steps": step, "total_steps": total, "complete": False}
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, total, config)
        batch = [encoded[i] for i in order[step]]
        n_reply = sum(sum(1 for t in labels if t != -100) for _, labels in batch)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for group_idx in _micro_batches([len(ids) for ids, _ in batch], config.tokens_per_micro_batch):
            width = max(len(batch[i][0]) for i in group_idx)
            ids = torch.full((len(group_idx), width), pad, dtype=torch.long)
            labels = torch.full((len(group_idx), width), -100, dtype=torch.long)
            mask = torch.zeros((len(group_idx), width), dtype=torch.long)
            for row, i in enumerate(group_idx):
                seq, lab = batch[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, : len(seq)] = torch.tensor(lab)
                mask[row, : len(seq)] = 1
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, t, hidden)
            targets = labels[:, 1:]
            keep = targets != -100  # position t-1 predicts token t
            logits = head(hidden[:, :-1][keep])  # (reply tokens, vocab): the head only where scored
            loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum") / n_reply
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        seen += len(batch)
        losses.append(round(step_loss, 5))
        spent += time.perf_counter() - t0
        if step % config.save_every == 0 and step < total:
            snapshot()
        if step == 1 or step % 5 == 0 or step == total:
            rate = seen / max(1e-9, time.perf_counter() - started)
            eta = (total - step) * config.batch_size / max(rate, 1e-9)
            recent = losses[-5:]
            log(
                f"step {step}/{total}  loss {sum(recent) / len(recent):.4f}  "
                f"{rate:.2f} examples/s  ETA {_eta(eta)}"
            )

    meta = {
        "name": name,
        "domains": list(domains),
        "description": description or f"LoRA adapter {name} for {', '.join(domains) or 'its domain'}.",
        "base_model": {
            "name": base_dir.name,  # the prepared folder's name (ragnet models list)
            "hidden_size": int(base_cfg["hidden_size"]),
            "num_hidden_layers": n_layers,
        },
        "config": {**asdict(config), "lora_alpha": config.lora_alpha, "layers_adapted": top},
        "data": [
            *data,
            {
                "role": "mix",
                "file": "-",
                "examples": len(encoded),
                "note": f"{len(domain_examples)} domain + {n_general} general; {skipped} too long",
            },
        ],
        "holdout": holdout,
        "init_adapter": _init_info(init_adapter),
        "steps": step,
        "seconds": round(spent, 1),
        "first_loss": round(sum(losses[:5]) / len(losses[:5]), 4),
        "last_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4),
        "trained": dt.date.today().isoformat(),
        "fingerprint": fingerprint,
    }
    _write_final(peft_model, out_dir, meta)
    log(f"wrote {out_dir} ({step} steps, {spent:.0f} s of training)")
    return {**_summary(meta, out_dir), "resumed_from": resumed_from}


def _init_info(init_adapter: Path | None) -> dict[str, Any] | None:
    if init_adapter is None:
        return None
    meta_file = init_adapter / "ragnet_adapter.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    return {
        "name": meta.get("name", init_adapter.name),
        "steps": meta.get("steps"),
        "seconds": meta.get("seconds"),
        "data": meta.get("data"),
        "config": meta.get("config"),
        "sha256": file_sha256(init_adapter / "adapter_model.safetensors"),
    }


def _summary(meta: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    weights = out_dir / "adapter_model.safetensors"
    return {
        "name": meta["name"],
        "out": str(out_dir),
        "steps": meta["steps"],
        "total_steps": meta["steps"],
        "complete": True,
        "examples": meta["data"][-1]["examples"],
        "first_loss": meta["first_loss"],
        "last_loss": meta["last_loss"],
        "seconds": meta["seconds"],
        "adapter_bytes": weights.stat().st_size if weights.is_file() else 0,
    }


def _write_final(peft_model: Any, out_dir: Path, meta: dict[str, Any]) -> None:
    """The PEFT folder (weights in float16: half the bytes, PEFT upcasts on load) + metadata + card,
    written beside ``out_dir`` and renamed into place (the snapshot folder goes with the old one)."""
    import torch
    from safetensors.torch import load_file, save_file

    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp))
    weights = tmp / "adapter_model.safetensors"
    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)
    cfg_file = tmp / "adapter_config.json"  # the base by name, not by this machine's path
    adapter_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    adapter_cfg["base_model_name_or_path"] = meta["base_model"]["name"]
    cfg_file.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / "README.md").unlink(missing_ok=True)  # PEFT's model-card template; DATA_CARD.md is ours
    (tmp / "ragnet_adapter.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (tmp / "DATA_CARD.md").write_text(_card(meta), encoding="utf-8")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
