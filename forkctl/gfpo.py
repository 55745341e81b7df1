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
  a logistic-regression policy on the model's own features. Saved as an untied ``lm_head``. Its step is SGD in
  centred, unit-norm feature coordinates (with a bias), averaged over steps (``--head-momentum``) and shortened to
  a KL trust region (``--max-kl``), so it cannot saturate π in a step whatever the hidden size (docs/gfpo.md).
- ``full``: every parameter (the paper's update; AdamW), plus the same fork-head step as an offset on the model's
  forking rows. Rollouts must then come from the current weights: the
  transformers backend generates with the learner itself; ``--backend vllm`` runs the engine in-process and the
  updated weights are pushed into it before each step's rollouts (as TRL's colocate mode does); a remote
  openai-compatible server keeps its starting weights (warned).

Outputs in ``--out``: the trained model (model, tokenizer, ``forkctl.json``; loadable like ssft's), and beside
it ``gfpo_log.jsonl`` (per-step statistics), ``gfpo_state.pt`` (for ``--resume``) and ``gfpo_config.json``.
The maths (policy, advantages, losses) is :mod:`forkctl.policy`.

The learner runs under ``accelerate launch``: each process takes its share of the batch's questions, rolls them
out, and gradients are averaged by accelerate.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from forkctl import console, forks
from forkctl.config import GFPOConfig, check_fingerprint, derive_seed, file_identity, write_run_config
from forkctl.errors import UserError
from forkctl.models import fork_hidden_states, fork_log_probs, load_for_training
from forkctl.policy import (ForkHead, ForkPolicy, entropy, entropy_collapsed, exhaustive_loss, group_advantages,
                            groups_disagree, head_log_probs, sampled_loss, scale_values, token_values,
                            tie_output_embeddings, trust_region_lr, unit_step_kl)
from forkctl.records import JsonlAppender, Question, keep_lines, read_json_lines

ESTIMATORS = ("sampled", "exhaustive")
TRAIN_MODES = ("fork-head", "full")
REWARDS = ("auto", "math", "synthetic")
STATE_FILE = "gfpo_state.pt"
LOG_FILE = "gfpo_log.jsonl"
CONFIG_FILE = "gfpo_config.json"
# Settings that do not change what is trained: a resume may extend the steps, or be quiet.
FEATURE_QUESTIONS = 256  # training prompts that set the fork head's feature centre and scale
NOT_FINGERPRINTED = ("out", "resume", "quiet", "overwrite", "steps", "save_every")


@dataclass
class Run:
    """Everything a GFPO step reads: the learner, its optimiser, the questions and the rollout backend."""

    cfg: GFPOConfig
    accelerator: Any
    policy: ForkPolicy
    optimizer: Any
    head_optimizer: Any
    tokenizer: Any
    fmt: forks.ForkFormat
    task: Any
    judge: Any
    questions: list[Question]
    rollout: Any = None
    sampling: Any = None
    ref_model: Any = None
    ref_head: Any = None
    order: list[int] = field(default_factory=list)
    model_path: str = ""


# --------------------------------------------------------------------------------------------------
# The loop


def run_gfpo(cfg: GFPOConfig) -> dict[str, Any]:
    """Train the choice of forking token; the model is saved into ``--out``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg.validate()
    accelerator = Accelerator()
    set_seed(cfg.seed)
    out = Path(cfg.out)
    resuming = _check_out(cfg, out, accelerator)
    run = _setup_learner(cfg, accelerator, str(out) if resuming else cfg.model)
    start_step = _restore(run, out) if resuming else 0
    run.rollout, run.sampling = _rollout_backend(run), _sampling(run)
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        write_run_config(out / CONFIG_FILE, "gfpo", cfg, fingerprint(cfg), {"fork_format": asdict(run.fmt)})
    log = JsonlAppender(out / LOG_FILE) if accelerator.is_main_process else None
    history = []
    for step in range(start_step, cfg.steps):
        stats = _step(run, step)
        history.append(stats)
        if log is not None:
            log.write(stats)
            _report(stats, not cfg.quiet)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save(run, out, step + 1)
    _save(run, out, max(cfg.steps, start_step))
    if log is not None:
        log.close()
    run.rollout.close()
    return {"steps": cfg.steps, "model": str(out), "history": history}


def fingerprint(cfg: GFPOConfig) -> dict[str, Any]:
    """What a run's results depend on: its settings (not the step count) and the identity of its inputs."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in NOT_FINGERPRINTED}
    task = file_identity(cfg.task) if Path(cfg.task).is_file() else {"name": cfg.task}
    return {**settings, "model_identity": file_identity(cfg.model), "task_identity": task}


def _check_out(cfg: GFPOConfig, out: Path, accelerator: Any) -> bool:
    """Refuse to mix runs in ``out``; return whether to resume from its saved state."""
    same = check_fingerprint(out / CONFIG_FILE, fingerprint(cfg), output=str(out), overwrite=cfg.overwrite)
    state = out / STATE_FILE
    if cfg.overwrite and not same:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:  # start again: what would be resumed or appended to goes
            for name in (STATE_FILE, LOG_FILE, CONFIG_FILE):
                (out / name).unlink(missing_ok=True)
        accelerator.wait_for_everyone()
        return False
    if cfg.resume:
        if not state.exists() and accelerator.is_main_process:
            console.warn(f"--resume: no {state} yet; starting from step 0")
        return state.exists()
    if (out / LOG_FILE).exists():
        raise UserError(f"{out} already holds a GFPO run; pass --resume to continue it, --overwrite to start again, "
                        f"or choose another --out")
    return False


def _setup_learner(cfg: GFPOConfig, accelerator: Any, model_path: str) -> Run:
    """fp32 master weights (bf16 autocast for --train full on a GPU with --bf16), the policy, its optimiser."""
    from forkctl.tasks import get_task

    bf16 = cfg.bf16 and cfg.train == "full" and accelerator.device.type == "cuda"
    model, tokenizer, autocast = load_for_training(model_path, bf16=bf16, device=str(accelerator.device))
    if cfg.train == "full" and _saved_tied(Path(model_path) / STATE_FILE):
        tie_output_embeddings(model)  # saved untied (forking rows + offset); training goes on as it was
    fmt = forks.resolve_fork_format(cfg.model, tokenizer, cfg.num_forks, cfg.fork_prefix, cfg.fork_suffix)
    if fmt.num_forks < 2:
        raise UserError(f"{cfg.model} has {fmt.num_forks} forking tokens; GFPO needs at least 2 (an SSFT checkpoint)")
    fork_ids = forks.fork_token_ids(tokenizer, fmt.num_forks)
    task = get_task(cfg.task, **cfg.task_options())
    questions = _load_questions(cfg, task)
    ref_model = _frozen_copy(model) if cfg.train == "full" and cfg.beta > 0 else None
    policy = ForkPolicy(model, tokenizer, fork_ids, cfg.train, autocast=autocast)
    _fit_head(cfg, policy, task, questions, fmt)
    ref_head = policy.head.weight.detach().clone() if cfg.train == "fork-head" else None
    optimizer = make_optimizer(cfg, policy)
    policy.trainable, optimizer = accelerator.prepare(policy.trainable, optimizer)
    head_optimizer = optimizer if cfg.train == "fork-head" else torch.optim.SGD(policy.head.parameters(),
                                                                                  lr=cfg.head_learning_rate)
    return Run(cfg, accelerator, policy, optimizer, head_optimizer, tokenizer, fmt, task,
               reward_judge(cfg.reward, task), questions, ref_model=ref_model, ref_head=ref_head,
               order=_question_order(len(questions), cfg.seed), model_path=model_path)


def _saved_tied(state_file: Path) -> bool:
    """Whether a full-mode run being resumed trained a model with tied embeddings."""
    return state_file.exists() and bool(torch.load(state_file, weights_only=False, mmap=True).get("tied"))


def _fit_head(cfg: GFPOConfig, policy: ForkPolicy, task: Any, questions: list[Question], fmt: forks.ForkFormat
              ) -> None:
    """The fork head's feature centre and scale from up to FEATURE_QUESTIONS training prompts (seeded sample)."""
    picked = random.Random(derive_seed(cfg.seed, "gfpo-features")).sample(
        questions, min(FEATURE_QUESTIONS, len(questions)))
    prompts = [forks.policy_prompt(policy.tokenizer, task.user_message(q, cfg.prompt_template), fmt,
                                   cfg.system_prompt) for q in picked]
    policy.fit_head(prompts)


def make_optimizer(cfg: GFPOConfig, policy: ForkPolicy) -> Any:
    """What ``--train`` trains. fork-head: plain SGD — the head's step is preconditioned to centred, unit-norm
    features, so it is in logit units and scale-free; Adam's per-coordinate normalisation would make it grow with
    the hidden size again. full: AdamW on the model (the head offset gets its own SGD, :func:`_setup_learner`)."""
    if cfg.train == "fork-head":
        return torch.optim.SGD(policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _load_questions(cfg: GFPOConfig, task: Any) -> list[Question]:
    questions = task.load()
    questions = questions[: cfg.limit] if cfg.limit else questions
    if not questions:
        raise UserError(f"{cfg.task}: no questions")
    return questions


def _restore(run: Run, out: Path) -> int:
    """Optimiser, head and random states of the saved step (the model itself was loaded from ``out``)."""
    state = torch.load(out / STATE_FILE, weights_only=False)
    run.optimizer.load_state_dict(state["optimizer"])
    run.policy.head.load_state_dict(state["head"])
    run.ref_head = state["ref_head"]
    random.setstate(state["py_rng"])
    torch.set_rng_state(state["torch_rng"])
    _truncate_log(out / LOG_FILE, state["step"])
    return state["step"]


def _rollout_backend(run: Run) -> Any:
    """The chosen backend with its own options. transformers rolls out the learner's own (current) weights; with
    --train full, vllm runs in-process and receives the updated weights before every step (:func:`_push_weights`);
    fork-head mode keeps an unchanged engine (the body is frozen and π is the learner's own)."""
    from forkctl.generation import load_backend
    from forkctl.generation.hf import TransformersBackend

    cfg = run.cfg
    if cfg.backend == "transformers":
        return TransformersBackend(cfg.model, batch_size=cfg.generate_batch_size, model_obj=run.policy.model,
                                   tokenizer=run.tokenizer)
    if cfg.train == "full" and cfg.backend == "vllm":
        # the starting checkpoint: the same architecture (and tying) as the learner, whose weights are pushed
        return load_backend("vllm", cfg.model, **cfg.backend_options(), in_process=True)
    if cfg.train == "full" and run.accelerator.is_main_process:
        console.warn(f"--train full with --backend {cfg.backend}: rollouts come from the server's starting weights, "
                     f"not the updated policy (use --backend vllm or transformers)")
    return load_backend(cfg.backend, cfg.model, **cfg.backend_options())


def _push_weights(run: Run) -> None:
    """--train full with an in-process vLLM engine: the learner's current weights (fp32 masters; vLLM casts them)
    into the engine, so this step's rollouts come from the policy being trained (also right after a --resume)."""
    if run.cfg.train != "full" or not hasattr(run.rollout, "load_weights"):
        return
    with torch.no_grad():
        run.rollout.load_weights(run.policy.model.state_dict().items())


def _sampling(run: Run) -> Any:
    from forkctl.generation import SamplingConfig

    cfg = run.cfg
    return SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, run.policy.fork_ids)


def _step(run: Run, step: int) -> dict[str, Any]:
    """One batch: π, a plan of tokens, rollouts, rewards, the update; returns the step's statistics."""
    cfg, policy, accelerator = run.cfg, run.policy, run.accelerator
    batch = [run.questions[run.order[(step * cfg.batch_size + i) % len(run.order)]] for i in range(cfg.batch_size)]
    batch = batch[accelerator.process_index::accelerator.num_processes] or batch[:1]
    users = [run.task.user_message(q, cfg.prompt_template) for q in batch]
    prompts = [forks.policy_prompt(run.tokenizer, u, run.fmt, cfg.system_prompt) for u in users]
    policy.model.eval()
    with torch.no_grad():
        logp0 = policy.log_probs(prompts)
        ref_logp = _reference_logp(run, prompts)
    probs0 = logp0.exp().cpu()
    actions, plan = _plan(cfg, probs0, run.fmt.num_forks, len(batch), step)
    _push_weights(run)
    rewards, truncated = _rollouts(run, batch, users, plan, step)
    if cfg.train == "full":
        policy.model.train()
    if cfg.estimator == "sampled":
        loss, extra, flat_adv = _sampled_update(run, prompts, logp0, actions, rewards, ref_logp)
    else:
        loss, extra, flat_adv = _exhaustive_update(run, prompts, probs0, rewards, ref_logp)
    all_probs, all_rewards, all_adv, all_truncated, all_plan = _gather(
        accelerator, probs0.tolist(), rewards, flat_adv, truncated, plan)
    return _step_stats(step + 1, all_probs, all_rewards, all_adv, all_truncated, float(loss.detach()), extra,
                       all_plan)


def _plan(cfg: GFPOConfig, probs0: torch.Tensor, num_forks: int, questions: int, step: int
          ) -> tuple[torch.Tensor | None, list[list[int]]]:
    """The tokens to roll out per question (1-based): G drawn from π (sampled) or G of every token (exhaustive)."""
    if cfg.estimator == "sampled":
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "gfpo-actions", step))
        actions = torch.multinomial(probs0, cfg.group_size, replacement=True, generator=gen)  # (Q, G)
        return actions, [[int(a) + 1 for a in row] for row in actions]
    return None, [[f for f in range(1, num_forks + 1) for _ in range(cfg.group_size)] for _ in range(questions)]


def _sampled_update(run: Run, prompts: list[str], logp0: torch.Tensor, actions: torch.Tensor,
                    rewards: list[list[float]], ref_logp: Any) -> tuple[Any, dict[str, float], list[float]]:
    cfg = run.cfg
    adv_rows = [group_advantages(r, cfg.scale_rewards) for r in rewards]
    advantages = torch.tensor(adv_rows, dtype=torch.float32, device=logp0.device)
    actions = actions.to(logp0.device)
    old = logp0.gather(1, actions).detach()
    for _ in range(cfg.ppo_epochs):
        logp = run.policy.log_probs(prompts)
        loss, extra = sampled_loss(logp, actions, advantages, old, cfg.clip, cfg.beta, ref_logp)
        extra.update(_update(run, loss, logp.detach().exp()))
    return loss, extra, [a for row in adv_rows for a in row]


def _exhaustive_update(run: Run, prompts: list[str], probs0: torch.Tensor, rewards: list[list[float]],
                       ref_logp: Any) -> tuple[Any, dict[str, float], list[float]]:
    cfg = run.cfg
    logp = run.policy.log_probs(prompts)
    values = token_values(rewards, run.fmt.num_forks, cfg.group_size).to(logp.device)
    if cfg.scale_rewards:
        values = scale_values(values)
    loss, extra = exhaustive_loss(logp, values, cfg.beta, ref_logp)
    extra.update(_update(run, loss, logp.detach().exp()))
    base = (probs0.to(values.device) * values).sum(-1, keepdim=True)
    return loss, extra, (values - base).flatten().tolist()


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


def _reference_logp(run: Run, prompts: list[str]) -> Any:
    """log π_start for the KL term: the starting fork head on the same features, or the frozen starting model."""
    cfg, policy = run.cfg, run.policy
    if cfg.beta <= 0:
        return None
    if run.ref_head is not None:
        return head_log_probs(fork_hidden_states(policy.model, policy.tokenizer, prompts), run.ref_head)
    return fork_log_probs(run.ref_model, policy.tokenizer, prompts, policy.fork_ids, autocast=policy.autocast)


def _rollouts(run: Run, batch: list[Question], users: list[str], plan: list[list[int]], step: int
              ) -> tuple[list[list[float]], list[bool]]:
    """Generate one response per planned (question, token); reward = 1 if the judge finds it correct."""
    from forkctl.generation import Request

    cfg = run.cfg
    requests, slots = [], []
    for qi, (q, user, tokens) in enumerate(zip(batch, users, plan)):
        for fork, count in sorted(Counter(tokens).items()):
            prompt = forks.render_prompt(run.tokenizer, user, fork, run.fmt, cfg.system_prompt)
            requests.append(Request(prompt, n=count, seed=derive_seed(cfg.seed, "gfpo-rollout", step, q.id, fork)))
            slots.append((qi, fork))
    completions = run.rollout.generate(requests, run.sampling)
    texts: list[dict[int, list[Any]]] = [dict() for _ in batch]
    for (qi, fork), comps in zip(slots, completions):
        texts[qi][fork] = list(comps)
    ordered = []
    for qi, tokens in enumerate(plan):
        used: Counter[int] = Counter()
        row = []
        for fork in tokens:
            row.append(texts[qi][fork][used[fork]])
            used[fork] += 1
        ordered.append(row)
    judged = run.judge.score([(q, [c.text for c in row]) for q, row in zip(batch, ordered)])
    rewards = [[1.0 if s.correct else 0.0 for s in row] for row in judged]
    truncated = [c.finish_reason == "length" for row in ordered for c in row]
    return rewards, truncated


def _update(run: Run, loss: Any, probs: Any) -> dict[str, float]:
    """One optimiser step. The fork head's step (the whole update in fork-head mode) is preconditioned and its
    size shortened to the KL trust region (``--max-kl``), agreed over processes; full mode also steps the model."""
    accelerator, head = run.accelerator, _unwrap(run.policy.trainable) if run.cfg.train == "fork-head" \
        else run.policy.head
    run.optimizer.zero_grad()
    run.head_optimizer.zero_grad()
    accelerator.backward(loss)
    if run.cfg.train == "full" and accelerator.num_processes > 1 and head.weight.grad is not None:
        head.weight.grad.copy_(accelerator.reduce(head.weight.grad, reduction="mean"))  # not DDP-wrapped
    head.precondition_(run.cfg.head_momentum)
    kl = unit_step_kl(head, run.policy.last_hidden, probs)
    if accelerator.num_processes > 1:
        kl = float(accelerator.reduce(torch.tensor(kl, device=accelerator.device), reduction="mean"))
    lr = trust_region_lr(kl, run.cfg.head_learning_rate, run.cfg.max_kl)
    for group in run.head_optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.step()
    if run.head_optimizer is not run.optimizer:
        run.head_optimizer.step()
    return {"step_lr": lr, "step_kl_bound": min(run.cfg.max_kl, kl * lr * lr) if kl > 0 else 0.0}


def _unwrap(module: Any) -> Any:
    return getattr(module, "module", module)


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
        "pi_collapsed": entropy_collapsed(probs),
        "groups_disagree": groups_disagree(rewards, plan),
        **extra,
    }


def _report(stats: dict[str, Any], progress: bool) -> None:
    """Warnings for steps that cannot learn, and (unless quiet) one line per step. Main process only."""
    if stats["truncated_frac"] == 1.0:
        console.warn(f"step {stats['step']}: EVERY rollout hit --max-new-tokens (truncated): rewards carry no "
                     f"signal; raise --max-new-tokens")
    if stats["zero_variance_frac"] == 1.0:
        console.warn(f"step {stats['step']}: every question's rewards are identical (zero variance): advantages "
                     f"are all zero and this step learns nothing")
    if stats["pi_collapsed"] and stats["groups_disagree"]:
        console.warn(f"step {stats['step']}: π has collapsed (entropy {stats['pi_entropy']:.3f}, the same token for "
                     f"every question) while the rewards still differ across questions: per-question choice is "
                     f"being lost; lower --lr / --max-kl, raise --beta, or check the fork-head features "
                     f"(docs/gfpo.md)")
    if progress:
        pi = " ".join(f"{p:.2f}" for p in stats["pi_mean"])
        console.note(f"step {stats['step']:>4}  reward {stats['reward_mean']:.3f}  π̄ [{pi}]  "
                     f"H {stats['pi_entropy']:.3f}  adv±{stats['adv_std']:.3f}  "
                     f"zero-var {stats['zero_variance_frac']:.2f}  trunc {stats['truncated_frac']:.2f}")


def _save(run: Run, out: Path, step: int) -> None:
    """The model into ``out`` (loadable like ssft's), and beside it the state a --resume continues from."""
    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    policy = run.policy
    with policy.saved_rows():
        policy.model.save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    run.fmt.save(out)
    state = {"step": step, "tied": policy.tied, "optimizer": run.optimizer.state_dict(), "py_rng": random.getstate(),
             "torch_rng": torch.get_rng_state(),
             "head": {k: v.detach().cpu() for k, v in policy.head.state_dict().items()},
             "ref_head": run.ref_head.cpu() if run.ref_head is not None else None}
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the last checkpoint) before continuing."""
    keep_lines(path, lambda obj: obj["step"] <= step)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return read_json_lines(path)


__all__ = ["GFPOConfig", "ForkHead", "ForkPolicy", "entropy", "exhaustive_loss", "group_advantages", "read_log",
           "reward_judge", "run_gfpo", "sampled_loss", "scale_values"]
