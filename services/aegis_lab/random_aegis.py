"""aegis-embed-shaped model directories (ModernBERT + YaRN, mean pooling, 2D Matryoshka).

aegis-embed's weights cannot be downloaded here, so the document-pool code path is
exercised with directories that have its exact architecture and random weights: a tiny
config for tests on CPU, the full shape (22 layers, hidden 768, vocab 256,000, 32K
context) for GPU benchmarks. The tokenizer is a byte-level BPE trained locally with
`tokenizers` (real aegis-embed ships its own). Output is a normal Sentence-Transformers
directory plus `aegis_space.json`, loaded by the same Embedder as any other model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

from aegis_serve.models.st_dir import write_json, write_modules, write_prompts

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}

# Shapes from the aegis-embed model card (and its base, mmbert-32k-yarn).
FULL_SHAPE: dict[str, Any] = {
    "vocab_size": 256_000,
    "hidden_size": 768,
    "intermediate_size": 1152,
    "num_hidden_layers": 22,
    "num_attention_heads": 12,
    "max_position_embeddings": 32_768,
    "global_attn_every_n_layers": 3,
    "local_attention": 128,
    "layer_options": [22, 11, 6, 3],
    "matryoshka_dims": [768, 512, 256, 128, 64],
}
TINY_SHAPE: dict[str, Any] = {
    "vocab_size": 2_048,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "max_position_embeddings": 32_768,
    "global_attn_every_n_layers": 3,
    "local_attention": 16,
    "layer_options": [6, 3, 2, 1],
    "matryoshka_dims": [64, 32, 16, 8],
}

_SEED_TEXT = (
    "Embeddings map text into a vector space where similar meanings lie close together. "
    "A document pool encodes long passages in bulk; a query pool answers short questions "
    "quickly. Agents search memory, match tools, route tasks and recall long histories. "
    "Matryoshka training keeps truncated vectors useful; layer exit trades depth for speed. "
    "The quick brown fox jumps over the lazy dog while servers batch requests by tokens. "
    "Multilingual retrieval: Paris est la capitale de la France. Berlin ist die Hauptstadt. "
    "東京は日本の首都です。 Москва — столица России. 0123456789 + - * / = ( ) [ ] { } , . ; :"
)


def train_tokenizer(
    corpus: Iterable[str], vocab_size: int, max_len: int
) -> PreTrainedTokenizerFast:
    """Byte-level BPE with [CLS] … [SEP] framing and character offsets (like ModernBERT)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(
                single="[CLS] $A [SEP]",
                pair="[CLS] $A [SEP] $B [SEP]",
                special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_len,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def modernbert_config(
    shape: dict[str, Any], tokenizer: PreTrainedTokenizerFast
) -> ModernBertConfig:
    return ModernBertConfig(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        max_position_embeddings=shape["max_position_embeddings"],
        global_attn_every_n_layers=shape["global_attn_every_n_layers"],
        local_attention=shape["local_attention"],
        rope_parameters={
            "full_attention": {**YARN, "rope_theta": 160_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 160_000.0},
        },
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )


def write_aegis_embed_dir(
    out: str | Path,
    *,
    tiny: bool = True,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    tokenizer_vocab: int | None = None,
    space_id: str = "aegis-embed-v1/768",
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight aegis-embed-architecture ST directory and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shape = {**(TINY_SHAPE if tiny else FULL_SHAPE), **(overrides or {})}
    vocab = min(tokenizer_vocab or shape["vocab_size"], shape["vocab_size"])
    texts = list(corpus) if corpus is not None else [_SEED_TEXT] * 4
    tokenizer = train_tokenizer(texts, vocab, shape["max_position_embeddings"])
    tokenizer.save_pretrained(str(out))
    config = modernbert_config(shape, tokenizer)
    torch.manual_seed(seed)
    model = ModernBertModel(config)
    model.save_pretrained(str(out), safe_serialization=True)
    hidden = shape["hidden_size"]
    write_modules(
        out, [("Transformer", ""), ("Pooling", "1_Pooling"), ("Normalize", "2_Normalize")]
    )
    write_prompts(out, {"query": "", "document": ""})
    files: dict[str, Any] = {
        "sentence_bert_config.json": {
            "max_seq_length": shape["max_position_embeddings"],
            "do_lower_case": False,
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": hidden,
            "pooling_mode": "mean",
            "include_prompt": True,
        },
        "aegis_space.json": {
            "space_id": space_id if not tiny else f"aegis-embed-tiny/{hidden}",
            "model_id": "aegis-embed-random" if not tiny else "aegis-embed-tiny",
            "dimensions": hidden,
            "matryoshka_dims": shape["matryoshka_dims"],
            "layer_options": shape["layer_options"],
        },
    }
    for name, content in files.items():
        write_json(out / name, content)
    (out / "2_Normalize").mkdir(exist_ok=True)
    return out
