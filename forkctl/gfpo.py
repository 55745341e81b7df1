"""``forkctl gfpo``: global forking policy optimisation — RL on the choice of forking token only.

The policy is π(g_i | x): the model's softmax restricted to the N forking tokens at the position right after the
generation prompt (and fork prefix). A step: compute π for a batch of questions, pick tokens, roll out the rest of
each response with the token fixed, reward each response with the benchmark's judge, turn rewards into
advantages, and descend −A·log π(g|x) at that one position only. Rollouts are never trained on, so the learner's
forward pass covers the prompt alone.

Estimators:
- ``sampled`` (the paper's): G tokens per question drawn from π; advantage r − mean(group), optionally divided by
  the group's std; PPO-style ratio clipping over ``ppo_epochs`` updates per batch; optional exact KL(π‖π_ref) to the
  starting policy (a categorical over N tokens, so the KL is computed exactly, not estimated).
- ``exhaustive``: G rollouts for every token give v_i(x); the loss −Σ_i π_i (v_i − b) with b = Σ_i π_i v_i has the
  exact expected-reward gradient Σ_i ∇π_i (v_i − b) (lower variance when N is small).

What is trained (``--train``):
- ``fork-head`` (default): only the forking tokens' output rows, untied from the input embeddings, on the frozen
  hidden state at the fork position. The reasoning after a fixed token cannot change, so the modes survive; this is
  a logistic-regression policy on the model's own features. Saved as an untied ``lm_head``.
- ``full``: every parameter (the paper's update). Rollouts must then come from the current weights: use the
  transformers rollout backend (a remote vLLM/openai server keeps its starting weights).

The learner runs under ``accelerate launch``: each process takes its share of the batch's questions, rolls them
out, and gradients are averaged by accelerate.
"""

from __future__ import annotations

from forkctl.errors import UserError
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from forkctl import forks
from forkctl.config import GFPOConfig
from forkctl.generation.hf import encode_left_padded
from forkctl.records import JsonlAppender, Question, keep_lines, read_json_lines, write_json

ESTIMATORS = ("sampled", "exhaustive")
TRAIN_MODES = ("fork-head", "full")
REWARDS = ("auto", "math", "synthetic")
STATE_FILE = "gfpo_state.pt"
LOG_FILE = "gfpo_log.jsonl"


# --------------------------------------------------------------------------------------------------
# The policy at the fork position


def fork_hidden(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The final (normed) hidden state at the last prompt position: the fork position."""
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask)
    return out.last_hidden_state[:, -1, :]


class ForkHead(torch.nn.Module):
    """The forking tokens' output rows, untied from everything else: logits = h · W_forkᵀ."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(rows.detach().clone().float())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.weight.t()


class ForkPolicy:
    """log π(g_i | x) over the N forking tokens, for either training mode.

    ``model`` is the plain model (generation, saving); ``trainable`` is what gradients flow through, wrapped by
    ``accelerate`` when several processes run: the whole model (``full``) or a :class:`ForkHead` (``fork-head``).
    """

    def __init__(self, model: Any, tokenizer: Any, fork_ids: list[int], train: str) -> None:
        self.model, self.tokenizer, self.fork_ids, self.train = model, tokenizer, fork_ids, train
        self.fork_index = torch.tensor(fork_ids)
        self.head: ForkHead | None = None
        if train == "fork-head":
            for p in model.parameters():
                p.requires_grad_(False)
            self.head = ForkHead(model.get_output_embeddings().weight[fork_ids])
            self.head.to(model.get_input_embeddings().weight.device)
        self.trainable: Any = self.head if self.head is not None else model

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.trainable.parameters() if p.requires_grad]

    def log_probs(self, prompts: list[str]) -> torch.Tensor:
        """(batch, N) log-probabilities; differentiable with respect to the trained parameters only."""
        device = self.model.get_input_embeddings().weight.device
        input_ids, mask = encode_left_padded(self.tokenizer, prompts, device)
        if self.head is not None:
            with torch.no_grad():
                h = fork_hidden(self.model, input_ids, mask)
            logits = self.trainable(h)
        else:
            out = self.trainable(input_ids=input_ids, attention_mask=mask, logits_to_keep=1)
            logits = out.logits[:, -1, :].float()[:, self.fork_index.to(device)]
        return torch.log_softmax(logits, dim=-1)

    def write_back(self) -> None:
        """Put the trained forking rows into an untied ``lm_head`` (fork-head mode) so checkpoints carry them."""
        if self.head is None:
            return
        out_emb = self.model.get_output_embeddings()
        if out_emb.weight.data_ptr() == self.model.get_input_embeddings().weight.data_ptr():
            out_emb.weight = torch.nn.Parameter(out_emb.weight.detach().clone(), requires_grad=False)
            self.model.config.tie_word_embeddings = False
            if hasattr(self.model.config, "get_text_config"):
                self.model.config.get_text_config().tie_word_embeddings = False
        with torch.no_grad():
            out_emb.weight[self.fork_ids] = self.head.weight.detach().to(out_emb.weight.dtype)


# --------------------------------------------------------------------------------------------------
# Advantages and losses (pure functions; tested directly)


def group_advantages(rewards: list[float], scale: bool) -> list[float]:
    """GRPO-style: r − mean(group), divided by the group's std (population) when ``scale`` and std > 0."""
    mean = sum(rewards) / len(rewards)
    adv = [r - mean for r in rewards]
    if scale:
        std = math.sqrt(sum(a * a for a in adv) / len(adv))
        if std > 0:
            adv = [a / std for a in adv]
    return adv


def sampled_loss(logp: Any, actions: Any, advantages: Any, old_logp: Any, clip: float, beta: float,
                 ref_logp: Any | None) -> tuple[Any, dict[str, float]]:
    """PPO-clipped policy-gradient loss on the chosen tokens, plus β·KL(π‖π_ref) (exact, per question).

    ``logp``: (Q, N) current log π; ``actions``: (Q, G) chosen token indices; ``advantages``: (Q, G);
    ``old_logp``: (Q, G) log π at sampling time (detached).
    """
    chosen = logp.gather(1, actions)
    ratio = torch.exp(chosen - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    stats = {"clip_frac": float(((ratio - 1).abs() > clip).float().mean())}
    if beta > 0 and ref_logp is not None:
        kl = (logp.exp() * (logp - ref_logp)).sum(-1).mean()
        loss = loss + beta * kl
        stats["kl"] = float(kl)
    return loss, stats


def exhaustive_loss(logp: Any, values: Any, beta: float, ref_logp: Any | None) -> tuple[Any, dict[str, float]]:
    """−Σ_i π_i (v_i − b), b = Σ_i π_i v_i (detached): the exact gradient of the expected reward."""
    probs = logp.exp()
    baseline = (probs * values).sum(-1, keepdim=True).detach()
    loss = -(probs * (values - baseline)).sum(-1).mean()
    stats: dict[str, float] = {}
    if beta > 0 and ref_logp is not None:
        kl = (probs * (logp - ref_logp)).sum(-1).mean()
        loss = loss + beta * kl
        stats["kl"] = float(kl)
    return loss, stats


def scale_values(values: torch.Tensor) -> torch.Tensor:
    """Per question, (v − mean_i v_i) / std_i v_i (0 where every token scored the same): each question weighs the
    same in the update, as GRPO's std scaling does for groups. The per-question gradient direction is unchanged."""
    centred = values - values.mean(-1, keepdim=True)
    std = values.std(-1, unbiased=False, keepdim=True)
    return torch.where(std > 0, centred / std.clamp(min=1e-8), torch.zeros_like(centred))


def entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


# --------------------------------------------------------------------------------------------------
# The loop


def run_gfpo(cfg: GFPOConfig) -> dict[str, Any]:
    progress = not cfg.quiet
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from forkctl.tasks import get_task
    from forkctl.generation import SamplingConfig, load_backend
    from forkctl.generation.hf import load_model_and_tokenizer

    cfg.validate()
    accelerator = Accelerator()
    set_seed(cfg.seed)
    out = Path(cfg.out)
    state_path = out / STATE_FILE
    start_step = 0
    model_path = cfg.model
    if cfg.resume and state_path.exists():
        model_path = str(out / "checkpoint")
    elif cfg.resume:
        _warn(accelerator, f"--resume: no {state_path} yet; starting from step 0")
    elif (out / LOG_FILE).exists():
        raise UserError(f"{out} already holds a GFPO run; pass --resume to continue it or choose another --out")

    model, tokenizer = load_model_and_tokenizer(model_path, device=str(accelerator.device))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = forks.resolve_fork_format(cfg.model, tokenizer, cfg.num_forks)
    if fmt.num_forks < 2:
        raise UserError(f"{cfg.model} has {fmt.num_forks} forking tokens; GFPO needs at least 2 (an SSFT checkpoint)")
    fork_ids = forks.fork_token_ids(tokenizer, fmt.num_forks)
    bench = get_task(cfg.task)
    questions = bench.load()[: cfg.limit] if cfg.limit else bench.load()
    if not questions:
        raise UserError(f"{cfg.task}: no questions")
    judge = reward_judge(cfg.reward, bench)

    ref_model = _frozen_copy(model) if cfg.train == "full" and cfg.beta > 0 else None
    policy = ForkPolicy(model, tokenizer, fork_ids, cfg.train)
    ref_head = policy.head.weight.detach().clone() if policy.head is not None else None
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    policy.trainable, optimizer = accelerator.prepare(policy.trainable, optimizer)

    if cfg.resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        start_step = state["step"]
        optimizer.load_state_dict(state["optimizer"])
        if policy.head is not None:
            policy.head.weight.data.copy_(state["head"])
            ref_head = state["ref_head"]
        random.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])
        _truncate_log(out / LOG_FILE, start_step)

    rollout = load_backend(cfg.backend, cfg.model, **cfg.backend_options()) \
        if cfg.backend != "transformers" else None
    if rollout is None:
        from forkctl.generation.hf import TransformersBackend

        rollout = TransformersBackend(cfg.model, batch_size=cfg.generate_batch_size, model_obj=policy.model,
                                      tokenizer=tokenizer)
        tokenizer.padding_side = "left"
    elif cfg.train == "full":
        _warn(accelerator, "--train full with a remote rollout backend: rollouts come from the server's weights, "
                           "not the updated policy")
    sampling = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, fork_ids)
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        write_json(out / "gfpo_config.json", {**asdict(cfg), "fork_format": asdict(fmt)})
    log = JsonlAppender(out / LOG_FILE) if accelerator.is_main_process else None
    order = _question_order(len(questions), cfg.seed)
    history = []
    for step in range(start_step, cfg.steps):
        batch = [questions[order[(step * cfg.batch_size + i) % len(order)]] for i in range(cfg.batch_size)]
        batch = batch[accelerator.process_index::accelerator.num_processes] or batch[:1]
        prompts = [forks.policy_prompt(tokenizer, q.problem, fmt, cfg.system_prompt) for q in batch]
        policy.model.eval()
        with torch.no_grad():
            logp0 = policy.log_probs(prompts)
            ref_logp = _reference_logp(policy, ref_head, ref_model, prompts, cfg)
        probs0 = logp0.exp().cpu()
        if cfg.estimator == "sampled":
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + step)
            actions = torch.multinomial(probs0, cfg.group_size, replacement=True, generator=gen)  # (Q, G)
            plan = [[int(a) + 1 for a in row] for row in actions]
        else:
            plan = [[f for f in range(1, fmt.num_forks + 1) for _ in range(cfg.group_size)] for _ in batch]
        rewards, truncated = _rollouts(rollout, judge, batch, plan, fmt, tokenizer, sampling, cfg, step)
        if cfg.train == "full":
            policy.model.train()
        if cfg.estimator == "sampled":
            adv_rows = [group_advantages(r, cfg.scale_rewards) for r in rewards]
            advantages = torch.tensor(adv_rows, dtype=torch.float32, device=logp0.device)
            old = logp0.gather(1, actions.to(logp0.device)).detach()
            for _ in range(cfg.ppo_epochs):
                logp = policy.log_probs(prompts)
                loss, extra = sampled_loss(logp, actions.to(logp.device), advantages, old, cfg.clip, cfg.beta,
                                           ref_logp)
                _update(accelerator, optimizer, loss)
            flat_adv = [a for row in adv_rows for a in row]
        else:
            values = torch.tensor([[sum(r[(f - 1) * cfg.group_size:f * cfg.group_size]) / cfg.group_size
                                    for f in range(1, fmt.num_forks + 1)] for r in rewards],
                                  dtype=torch.float32, device=logp0.device)
            if cfg.scale_rewards:
                values = scale_values(values)
            logp = policy.log_probs(prompts)
            loss, extra = exhaustive_loss(logp, values, cfg.beta, ref_logp)
            _update(accelerator, optimizer, loss)
            base = (probs0.to(values.device) * values).sum(-1, keepdim=True)
            flat_adv = (values - base).flatten().tolist()
        all_probs, all_rewards, all_adv, all_truncated, all_plan = _gather(
            accelerator, probs0.tolist(), rewards, flat_adv, truncated, plan)
        stats = _step_stats(step + 1, all_probs, all_rewards, all_adv, all_truncated, float(loss.detach()), extra,
                            all_plan)
        history.append(stats)
        if log is not None:
            log.write(stats)
            _report(accelerator, stats, progress)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save(accelerator, policy, tokenizer, fmt, optimizer, ref_head, out, step + 1)
    _save(accelerator, policy, tokenizer, fmt, optimizer, ref_head, out, max(cfg.steps, start_step))
    if log is not None:
        log.close()
    rollout.close()
    return {"steps": cfg.steps, "checkpoint": str(out / "checkpoint"), "history": history}


def reward_judge(reward: str, bench: Any) -> Any:
    """The benchmark whose ``score`` turns rollouts into rewards: the data's own judge, or a named one."""
    if reward == "auto":
        return bench
    if reward == "math":
        from forkctl.tasks.math import MathTask

        return MathTask("math-reward")
    from forkctl.tasks.synthetic import SyntheticTask

    return SyntheticTask()


def _question_order(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _frozen_copy(model: Any) -> Any:
    import copy

    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref.eval()


def _reference_logp(policy: ForkPolicy, ref_head: Any, ref_model: Any, prompts: list[str], cfg: GFPOConfig) -> Any:
    if cfg.beta <= 0:
        return None
    if ref_head is not None:
        device = policy.model.get_input_embeddings().weight.device
        ids, mask = encode_left_padded(policy.tokenizer, prompts, device)
        h = fork_hidden(policy.model, ids, mask)
        return torch.log_softmax(h.float() @ ref_head.to(device).t(), dim=-1)
    return ForkPolicy(ref_model, policy.tokenizer, policy.fork_ids, "full").log_probs(prompts)


def _rollouts(backend: Any, bench: Any, batch: list[Question], plan: list[list[int]], fmt: forks.ForkFormat,
              tokenizer: Any, sampling: Any, cfg: GFPOConfig, step: int) -> tuple[list[list[float]], list[bool]]:
    """Generate one response per planned (question, token); reward = 1 if the benchmark judges it correct."""
    from forkctl.generation import Request

    requests, slots = [], []
    for qi, (q, tokens) in enumerate(zip(batch, plan)):
        for fork, count in sorted(Counter(tokens).items()):
            prompt = forks.render_prompt(tokenizer, q.problem, fork, fmt, cfg.system_prompt)
            requests.append(Request(prompt, n=count, seed=cfg.seed * 7919 + step * 104729 + qi * 31 + fork))
            slots.append((qi, fork))
    completions = backend.generate(requests, sampling)
    texts: list[dict[int, list[Any]]] = [dict() for _ in batch]
    for (qi, fork), comps in zip(slots, completions):
        texts[qi][fork] = list(comps)
    ordered = []
    for qi, tokens in enumerate(plan):
        used = Counter()
        row = []
        for fork in tokens:
            row.append(texts[qi][fork][used[fork]])
            used[fork] += 1
        ordered.append(row)
    judged = bench.score([(q, [c.text for c in row]) for q, row in zip(batch, ordered)])
    rewards = [[1.0 if s.correct else 0.0 for s in row] for row in judged]
    truncated = [c.finish_reason == "length" for row in ordered for c in row]
    return rewards, truncated


def _update(accelerator: Any, optimizer: Any, loss: Any) -> None:
    optimizer.zero_grad()
    accelerator.backward(loss)
    optimizer.step()


def _gather(accelerator: Any, *lists: list) -> list[list]:
    """Each per-process list concatenated over all processes (every rank gets them), so the logged statistics
    describe the whole batch; a single process returns them unchanged."""
    if accelerator.num_processes == 1:
        return list(lists)
    from accelerate.utils import gather_object

    return [gather_object(list(x)) for x in lists]


def _step_stats(step: int, probs: list[list[float]], rewards: list[list[float]], adv: list[float],
                truncated: list[bool], loss: float, extra: dict[str, float], plan: list[list[int]]) -> dict[str, Any]:
    n_forks = len(probs[0])
    mean_pi = [sum(p[i] for p in probs) / len(probs) for i in range(n_forks)]
    flat = [r for row in rewards for r in row]
    zero_var = [len(set(row)) == 1 for row in rewards]
    chosen = Counter(f for row in plan for f in row)
    return {
        "step": step,
        "reward_mean": sum(flat) / len(flat),
        "pi_mean": mean_pi,
        "pi_entropy": sum(entropy(p) for p in probs) / len(probs),
        "pi_mean_entropy": entropy(mean_pi),
        "chosen": {str(f): chosen[f] for f in sorted(chosen)},
        "adv_mean": sum(adv) / len(adv),
        "adv_std": math.sqrt(max(0.0, sum(a * a for a in adv) / len(adv) - (sum(adv) / len(adv)) ** 2)),
        "adv_min": min(adv),
        "adv_max": max(adv),
        "zero_variance_frac": sum(zero_var) / len(zero_var),
        "truncated_frac": sum(truncated) / len(truncated),
        "loss": loss,
        **extra,
    }


def _report(accelerator: Any, stats: dict[str, Any], progress: bool) -> None:
    if stats["truncated_frac"] == 1.0:
        _warn(accelerator, f"step {stats['step']}: EVERY rollout hit --max-new-tokens (truncated): rewards carry no "
                           f"signal; raise --max-new-tokens")
    if stats["zero_variance_frac"] == 1.0:
        _warn(accelerator, f"step {stats['step']}: every question's rewards are identical (zero variance): "
                           f"advantages are all zero and this step learns nothing")
    if progress:
        from rich.console import Console

        pi = " ".join(f"{p:.2f}" for p in stats["pi_mean"])
        Console(stderr=True).print(
            f"step {stats['step']:>4}  reward {stats['reward_mean']:.3f}  π̄ [{pi}]  H {stats['pi_entropy']:.3f}  "
            f"adv±{stats['adv_std']:.3f}  zero-var {stats['zero_variance_frac']:.2f}  "
            f"trunc {stats['truncated_frac']:.2f}", highlight=False)


def _warn(accelerator: Any, message: str) -> None:
    if accelerator.is_main_process:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]WARNING:[/] {message}", highlight=False)


def _save(accelerator: Any, policy: ForkPolicy, tokenizer: Any, fmt: forks.ForkFormat, optimizer: Any,
          ref_head: Any, out: Path, step: int) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    ckpt = out / "checkpoint"
    policy.write_back()
    policy.model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    fmt.save(ckpt)
    state = {"step": step, "optimizer": optimizer.state_dict(), "py_rng": random.getstate(),
             "torch_rng": torch.get_rng_state(),
             "head": policy.head.weight.detach().cpu() if policy.head is not None else None,
             "ref_head": ref_head.cpu() if ref_head is not None else None}
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the last checkpoint) before continuing."""
    keep_lines(path, lambda obj: obj["step"] <= step)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return read_json_lines(path)
