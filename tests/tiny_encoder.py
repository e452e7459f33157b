"""A tiny random XLM-RoBERTa encoder and a word-level tokenizer, built in code (milliseconds).

It stands in for multilingual-e5-small (same architecture, same pair encoding ``<s> q </s></s> c
</s>``, offsets), so the extractive reader trains, saves, loads and reads for real in tests.
"""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "what",
    "who",
    "when",
    "where",
    "is",
    "was",
    "the",
    "a",
    "of",
    "in",
    "on",
    "capital",
    "city",
    "river",
    "country",
    "france",
    "paris",
    "germany",
    "berlin",
    "spain",
    "madrid",
    "italy",
    "rome",
    "flows",
    "through",
    "it",
    "lies",
    "born",
    "year",
    "1969",
    "1990",
    "apollo",
    "moon",
    "landed",
    "team",
    "won",
    "super",
    "bowl",
    "broncos",
    "panthers",
    "denver",
    ".",
    ",",
    "?",
    "yes",
    "no",
    "none",
]


def build_tiny_encoder(models_dir: Path, name: str = "multilingual-e5-small", seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = XLMRobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=200,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    path = models_dir / name
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    fast.save_pretrained(str(path))
    return path
