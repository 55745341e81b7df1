"""Tiny models built locally: a byte-level BPE tokenizer trained with ``tokenizers`` and a random Qwen2.

Used by the tests, the examples and the benchmarks, so that nothing needs the Hugging Face Hub. The model is
a real ``Qwen2ForCausalLM`` (the architecture of the paper's checkpoints), loadable by transformers and vLLM.
"""

from __future__ import annotations

import random
from pathlib import Path

from forkctl.forks import CHATML_TEMPLATE, ForkFormat, add_fork_tokens

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_WORDS = (
    "the a of to and is in that we for this let so then find compute answer total sum product number value "
    "solve equation square root prime factor divide multiply add subtract first second third step check "
    "therefore hence thus final boxed case count ways probability triangle circle area angle length side "
    "integer real positive negative even odd remainder modulo digit base power equal greater less than "
    "question problem reasoning think strategy method approach verify result user assistant system"
).split()


def toy_corpus(num_lines: int = 3000, seed: int = 0, extra: list[str] | None = None) -> list[str]:
    """Deterministic text covering words, numbers, LaTeX and the chat markup, for training a tokenizer."""
    rng = random.Random(seed)
    lines = list(extra or [])
    for _ in range(num_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        nums = [str(rng.randint(0, 999)) for _ in range(rng.randint(1, 4))]
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        lines.append(" ".join(words) + " " + " + ".join(nums) + f" = \\boxed{{{a + b}}} $\\frac{{{a}}}{{{b}}}$")
    return lines


def train_tokenizer(corpus: list[str], vocab_size: int = 512):
    """A ByteLevel BPE tokenizer (GPT-2/Qwen style) wrapped as ``PreTrainedTokenizerFast`` with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_toy_model(out_dir: str | Path, num_forks: int = 4, hidden_size: int = 128, num_layers: int = 2,
                    num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 256,
                    vocab_size: int = 512, max_positions: int = 4096, seed: int = 0,
                    corpus: list[str] | None = None, tie_embeddings: bool = True) -> Path:
    """Build and save a random tiny Qwen2 with ``num_forks`` forking tokens; return its directory."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus or toy_corpus(seed=seed), vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_positions, tie_word_embeddings=tie_embeddings,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    if num_forks:
        add_fork_tokens(tokenizer, model, num_forks)
    model.generation_config = GenerationConfig(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ForkFormat(num_forks=num_forks).save(out)
    return out
