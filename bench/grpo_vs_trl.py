"""Our GRPO step against TRL's GRPOTrainer, side by side in one process: the same model folder, prompts (in the
same order), group size, lengths, optimizer and thread count. Ours runs first (SFT to get a model that answers,
then GRPO), TRL second from the SFT export. TRL is a bench extra only, installed in .venv-bench:

    make bench-trl      (or: .venv-bench/bin/python bench/grpo_vs_trl.py [--presets tiny,small] [--steps 32])"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before torch is imported: both sides get the same thread pool

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from transformers import TrainerCallback

from trainguard import api
from trainguard.data.rollouts import PoolSource
from trainguard.tasks import build_task
from trainguard.track.store import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TASK, PARAMS = "reverse", {"min_len": 3, "max_len": 6}
LR, CLIP_EPS, SEED = 1e-4, 0.2, 0
SFT_STEPS, SFT_WARMUP = 200, 30  # examples/grpo.yaml's SFT stage: the policy answers (and stops) before GRPO


def our_config(
    work: Path,
    preset: str,
    prompts: int,
    group: int,
    max_new: int,
    steps: int,
    sft_steps: int,
    fused: bool = False,
    compiled: bool = False,
) -> dict[str, Any]:
    """SFT on noisy demonstrations (its export is the shared starting model), then GRPO: one update per rollout
    batch, no KL, the guard on as in any run; `fused`/`compiled`: GRPO with optimizer.fused / run.compile."""
    return {
        "run": {"name": f"grpo-vs-trl-{preset}", "seed": SEED, "out_dir": str(work), "threads": 2, "compile": compiled},
        "model": {"preset": preset},
        "tokenizer": {"max_length": 64},
        "data": {"sources": [{"task": TASK, "n": 1000, "params": PARAMS, "noise": 0.5}]},
        "stages": [
            {
                "name": "sft",
                "objective": "sft",
                "max_steps": sft_steps,
                "batch_size": 32,
                "optimizer": {"lr": 1e-3, "weight_decay": 0.01},
                "schedule": {"warmup_steps": min(SFT_WARMUP, sft_steps - 1), "name": "constant"},
                "eval_every": 10**6,
                "save_every": 10**6,
            },
            {
                "name": "grpo",
                "objective": {"name": "grpo", "epochs": 1, "beta": 0.0, "clip_low": CLIP_EPS, "clip_high": CLIP_EPS},
                "source": {
                    "name": "rollouts",
                    "task": TASK,
                    "params": PARAMS,
                    "prompts_per_step": prompts,
                    "group_size": group,
                    "max_new_tokens": max_new,
                    "temperature": 1.0,
                    "eval_prompts": 0,
                },
                "max_steps": steps,
                "optimizer": {"lr": LR, "weight_decay": 0.0, "fused": fused},
                "schedule": {"warmup_steps": 0, "name": "constant"},
                "eval_every": 10**6,
                "save_every": 10**6,
            },
        ],
        "eval": {"task": TASK, "n": 50, "max_new_tokens": max_new},
        "tracking": {"tensorboard": False, "progress": "off"},
    }


def run_ours(work: Path, preset: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Our GRPO steps, read back from the run's metrics.db: per step its time and split, and the model folder."""
    result = api.run(our_config(work, preset, **sizes), overwrite=True)
    per_step: dict[int, dict[str, float]] = {}
    for step, stage, key, value, when in read_metrics(result.path / "metrics.db"):
        if stage == "grpo":
            per_step.setdefault(step, {})[key] = value
            if key == "perf/step_time_s":
                per_step[step]["wall_at"] = when
    rows = [per_step[s] for s in sorted(per_step) if "perf/step_time_s" in per_step[s]]
    return {
        "folder": result.path / "exports" / "sft",
        "step_s": [r["perf/step_time_s"] for r in rows],
        "generate_s": [r["time/generate_s"] for r in rows],
        "score_s": [r["time/score_s"] for r in rows],
        "train_s": [r["perf/step_time_s"] - r["time/generate_s"] - r["time/score_s"] for r in rows],
        "response_len": [r["rollout/response_length_mean"] for r in rows],
        "reward": [r["rollout/reward_mean"] for r in rows],
        "wall_at": [r["wall_at"] for r in rows],
    }


def our_prompt_order(steps: int, prompts: int) -> list[int]:
    """The instance ids our rollout source drew, in order: its pool draw with the GRPO stage's seed (run seed +
    stage index 1), pool 0..1999 (the source's defaults), as one process (all rows its own)."""
    return PoolSource.draw(SimpleNamespace(seed=SEED + 1, cursor=0, rows=range), steps * prompts, 2000, 0)


class TrlClock(TrainerCallback):
    """Each TRL step from on_step_begin to on_step_end (generation, scoring, forward, backward, clip, AdamW), and
    the numbers TRL logs (logging_steps=1: one entry a step)."""

    def __init__(self) -> None:
        self.step_s: list[float] = []
        self.end_at: list[float] = []
        self.logs: list[dict[str, float]] = []
        self.t0 = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        self.step_s.append(now - self.t0)
        self.end_at.append(now)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "completions/mean_length" in logs:
            self.logs.append(dict(logs))


def timed(fn: Callable[..., Any], seconds: list[float]) -> Callable[..., Any]:
    """`fn`, appending each call's wall time to `seconds`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds.append(time.perf_counter() - t0)
        return out

    return wrapper


def trl_args(out: str, prompts: int, group: int, max_new: int, steps: int) -> Any:
    """GRPOConfig matching our stage: one step = P prompts x G completions, one update per generation batch."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=prompts * group,  # completions per step: P prompts x G samples
        gradient_accumulation_steps=1,
        num_generations=group,
        max_completion_length=max_new,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        num_iterations=1,
        epsilon=CLIP_EPS,
        loss_type="grpo",  # ours: mean over each sequence's tokens, then over sequences
        scale_rewards="group",
        learning_rate=LR,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        shuffle_dataset=False,  # our draw order, each prompt repeated G times
        use_vllm=False,
        use_cpu=True,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL turns it on by default; ours never recomputes activations
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=SEED,
    )


def run_trl(folder: Path, ids: list[int], prompts: int, group: int, max_new: int, steps: int) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same folder and prompt order, with our verifier as its reward function; the
    model's generate and the trainer's generate-and-score are timed by wrapping them."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    task = build_task(TASK, PARAMS)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    dataset = Dataset.from_dict({"prompt": [task.instance(i).prompt for i in ids], "instance_id": ids})

    def verifier(completions: list[str], instance_id: list[int], **_: Any) -> list[float]:
        return [task.score(task.instance(i), c).value for c, i in zip(completions, instance_id, strict=True)]

    generate_s: list[float] = []
    prepare_s: list[float] = []
    model.generate = timed(model.generate, generate_s)
    clock = TrlClock()
    # Our run turns on torch's deterministic algorithms for the whole process, and with them torch fills every
    # torch.empty with NaN: TRL's CPU log-prob kernel allocates a (tokens x 32768) buffer twice a step (~0.1 s
    # of NaN filling on the tiny model). TRL runs as it would on its own: torch's default, off.
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    with tempfile.TemporaryDirectory() as out:
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=verifier,
            args=trl_args(out, prompts, group, max_new, steps),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        for noisy in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(noisy)
        trainer._generate_and_score_completions = timed(trainer._generate_and_score_completions, prepare_s)
        assert not trainer.model.is_gradient_checkpointing
        first = trainer.processing_class(text=[dataset[0]["prompt"]])["input_ids"][0]
        try:
            trainer.train()
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
    assert len(generate_s) == len(clock.step_s) == steps, (len(generate_s), len(clock.step_s))
    return {
        "step_s": clock.step_s,
        "generate_s": generate_s,
        "generate_and_score_s": prepare_s,
        "train_s": [s - p for s, p in zip(clock.step_s, prepare_s, strict=True)],
        "response_len": [log["completions/mean_length"] for log in clock.logs],
        "reward": [log.get("reward", float("nan")) for log in clock.logs],
        "wall_at": clock.end_at,
        "first_prompt_ids": first,
    }


def summary(side: dict[str, Any], skip: int, tokens_per_step: list[float]) -> dict[str, float]:
    """Medians and means over the steps after the warm-up ones; wall/step is end-to-end (logging included)."""
    step, gen = side["step_s"][skip:], side["generate_s"][skip:]
    walls = [b - a for a, b in zip(side["wall_at"][skip:], side["wall_at"][skip + 1 :], strict=False)]
    tokens = tokens_per_step[skip:]
    return {
        "steps": len(step),
        "step_median_s": statistics.median(step),
        "step_mean_s": statistics.fmean(step),
        "wall_per_step_median_s": statistics.median(walls) if walls else float("nan"),
        "generate_median_s": statistics.median(gen),
        "generate_share": sum(gen) / sum(step),
        "train_median_s": statistics.median(side["train_s"][skip:]),
        "response_len_mean": statistics.fmean(side["response_len"][skip:]),
        "reward_mean": statistics.fmean(side["reward"][skip:]),
        "rollout_tokens_per_generate_s": sum(tokens) / sum(gen),
        "rollout_tokens_per_step_s": sum(tokens) / sum(step),
    }


def bench_row(work: Path, preset: str, sizes: dict[str, int], skip: int) -> dict:
    """One model: ours, then TRL from our SFT export, with the same sizes; both summarised."""
    prompts, group, max_new, steps = (sizes[k] for k in ("prompts", "group", "max_new", "steps"))
    options = {"fused": sizes["fused"], "compiled": sizes["compiled"]}
    ours = run_ours(work, preset, sizes)
    ids = our_prompt_order(steps, prompts)
    trl = run_trl(ours["folder"], ids, prompts, group, max_new, steps)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ours["folder"], local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(ours["folder"], local_files_only=True)
    prompt = build_task(TASK, PARAMS).instance(ids[0]).prompt
    ours_first = [tok.bos_token_id, *tok.encode(prompt, add_special_tokens=False)]
    assert list(trl.pop("first_prompt_ids")) == ours_first, "TRL tokenizes the prompts differently"
    n = prompts * group
    row = {
        "preset": preset,
        "params": sum(p.numel() for p in model.parameters()),
        "attention": model.config._attn_implementation,
        "prompts": prompts,
        "group": group,
        "max_new_tokens": max_new,
        "steps": steps,
        "warmup_skipped": skip,
        "ours_options": options,
        "ours": summary(ours, skip, [n * x for x in ours["response_len"]]),
        "trl": summary(trl, skip, [n * x for x in trl["response_len"]]),
        "raw": {"ours": {k: v for k, v in ours.items() if k != "folder"}, "trl": trl},
    }
    row["ratio_ours_over_trl"] = row["ours"]["step_median_s"] / row["trl"]["step_median_s"]
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| model | params | P×G | M | ours step median (mean) s | ours generate share | TRL step median (mean) s "
        "| TRL generate share | ours / TRL | ours rollout tok/s (generate) | mean response tokens ours / TRL |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        o, t = r["ours"], r["trl"]
        lines.append(
            f"| {r['preset']} | {r['params']:,} | {r['prompts']}×{r['group']} | {r['max_new_tokens']} "
            f"| {o['step_median_s']:.3f} ({o['step_mean_s']:.3f}) | {o['generate_share']:.0%} "
            f"| {t['step_median_s']:.3f} ({t['step_mean_s']:.3f}) | {t['generate_share']:.0%} "
            f"| {r['ratio_ours_over_trl']:.2f} | {o['rollout_tokens_per_generate_s']:,.0f} "
            f"| {o['response_len_mean']:.2f} / {t['response_len_mean']:.2f} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    import transformers
    import trl

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = "+uncommitted changes in src" if git("status", "--porcelain", "src") else ""
    return {
        "trainguard": git("rev-parse", "--short", "HEAD") + dirty,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,small", help="Model presets, one row each.")
    ap.add_argument("--prompts", type=int, default=8, help="Prompts per step (P).")
    ap.add_argument("--group", type=int, default=8, help="Samples per prompt (G).")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="Longest response (M).")
    ap.add_argument("--steps", type=int, default=32, help="GRPO steps per side, warm-up included.")
    ap.add_argument("--warmup", type=int, default=2, help="First steps left out of the statistics.")
    ap.add_argument("--sft-steps", type=int, default=SFT_STEPS, help="SFT steps that make the shared start model.")
    ap.add_argument("--fused", action="store_true", help="Ours with optimizer.fused (TRL's default AdamW kernel).")
    ap.add_argument("--compile", action="store_true", help="Ours with run.compile (the training forward).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "grpo_vs_trl.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="grpo-vs-trl-"))
    rows = []
    for preset in args.presets.split(","):
        sizes = {
            "prompts": args.prompts,
            "group": args.group,
            "max_new": args.max_new_tokens,
            "steps": args.steps,
            "sft_steps": args.sft_steps,
            "fused": args.fused,
            "compiled": args.compile,
        }
        rows.append(bench_row(work, preset, sizes, args.warmup))
        print(table(rows[-1:]), flush=True)
    settings = {
        "task": f"{TASK} {PARAMS}, verifier exact match; TRL gets our prompts in our draw order",
        "optimizer": f"AdamW lr {LR}, betas (0.9, 0.999), no weight decay, constant LR, clip 1.0",
        "grpo": f"eps {CLIP_EPS}, beta 0, one update per rollout batch, loss_type grpo, rewards scaled by group std",
        "start_model": f"our SFT export after {args.sft_steps} steps (examples/grpo.yaml's SFT stage)",
        "ours": "trainguard run with the guard on and run.deterministic (the defaults); step = perf/step_time_s",
        "trl": "GRPOTrainer, no vLLM, fp32, no activation checkpointing, torch's deterministic mode off (its "
        "default); step = on_step_begin..on_step_end",
    }
    result = {"machine": versions(), "command": "make bench-trl", "settings": settings, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)  # two run folders with checkpoints; the numbers are in the JSON
    print(json.dumps(result["machine"]))
    print(table(rows))


if __name__ == "__main__":
    main()
