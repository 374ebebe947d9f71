"""Our GRPO step against TRL's GRPOTrainer, side by side in one process: the same model folder, prompts (in the
same order), group size, lengths, optimizer and thread count. Our SFT run makes a model that answers; then both
sides run GRPO from its export, in rounds whose order alternates. TRL is a bench extra only, in .venv-bench:

    make bench-trl      (or: .venv-bench/bin/python bench/grpo_vs_trl.py [--presets tiny,small] [--steps 32])"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before torch is imported: both sides get the same thread pool

import argparse
import itertools
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from grpo_trl_side import CLIP_EPS, LR, PARAMS, SEED, TASK, run_trl
from trainguard import api
from trainguard.data.rollouts import PoolSource
from trainguard.tasks import build_task
from trainguard.track.store import read_metrics

ROOT = Path(__file__).resolve().parents[1]
SFT_STEPS, SFT_WARMUP = 200, 30  # examples/grpo.yaml's SFT stage: the policy answers (and stops) before GRPO


def sft_config(work: Path, preset: str, sft_steps: int) -> dict[str, Any]:
    """SFT on noisy demonstrations: its export is the model both sides start GRPO from."""
    return {
        "run": {"name": f"sft-{preset}", "seed": SEED, "out_dir": str(work), "threads": 2},
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
            }
        ],
        "tracking": {"tensorboard": False, "progress": "off"},
    }


def grpo_config(work: Path, folder: Path, sizes: dict[str, Any], round_: int) -> dict[str, Any]:
    """GRPO from the SFT export: one update per rollout batch, no KL, the guard on as in any run. Options:
    `fused` (optimizer.fused), `compiled` (run.compile), `lean` (the grouped sampler and packed scoring). Run
    seed SEED + 1: the stage's rollouts draw as the second stage of one SFT-then-GRPO run would."""
    lean = sizes["lean"]
    return {
        "run": {
            "name": f"grpo-{round_}",
            "seed": SEED + 1,
            "out_dir": str(work),
            "threads": 2,
            "compile": sizes["compiled"],
        },
        "model": {"path": str(folder)},
        "tokenizer": {"max_length": 64},
        "data": {"sources": [{"task": TASK, "n": 1000, "params": PARAMS, "noise": 0.5}]},  # as the SFT run's
        "stages": [
            {
                "name": "grpo",
                "objective": {
                    "name": "grpo",
                    "epochs": 1,
                    "beta": 0.0,
                    "clip_low": CLIP_EPS,
                    "clip_high": CLIP_EPS,
                    "packed": lean,
                },
                "source": {
                    "name": "rollouts",
                    "task": TASK,
                    "params": PARAMS,
                    "prompts_per_step": sizes["prompts"],
                    "group_size": sizes["group"],
                    "max_new_tokens": sizes["max_new"],
                    "temperature": 1.0,
                    "eval_prompts": 0,
                    "sampler": "grouped" if lean else "generate",
                },
                "max_steps": sizes["steps"],
                "optimizer": {"lr": LR, "weight_decay": 0.0, "fused": sizes["fused"]},
                "schedule": {"warmup_steps": 0, "name": "constant"},
                "eval_every": 10**6,
                "save_every": 10**6,
            },
        ],
        "tracking": {"tensorboard": False, "progress": "off"},
    }


def run_ours(work: Path, folder: Path, sizes: dict[str, Any], round_: int) -> dict[str, Any]:
    """Our GRPO steps, read back from the run's metrics.db: per step its time and split."""
    result = api.run(grpo_config(work, folder, sizes, round_), overwrite=True)
    per_step: dict[int, dict[str, float]] = {}
    for step, stage, key, value, when in read_metrics(result.path / "metrics.db"):
        if stage == "grpo":
            per_step.setdefault(step, {})[key] = value
            if key == "perf/step_time_s":
                per_step[step]["wall_at"] = when
    rows = [per_step[s] for s in sorted(per_step) if "perf/step_time_s" in per_step[s]]
    return {
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


def summary(side: dict[str, Any], tokens_per_step: list[float]) -> dict[str, float]:
    """Medians and means over the pooled steps; wall/step is end-to-end (logging included)."""
    step, gen, walls, tokens = side["step_s"], side["generate_s"], side["wall_s"], tokens_per_step
    return {
        "steps": len(step),
        "step_median_s": statistics.median(step),
        "step_mean_s": statistics.fmean(step),
        "wall_per_step_median_s": statistics.median(walls) if walls else float("nan"),
        "generate_median_s": statistics.median(gen),
        "generate_share": sum(gen) / sum(step),
        "train_median_s": statistics.median(side["train_s"]),
        "response_len_mean": statistics.fmean(side["response_len"]),
        "reward_mean": statistics.fmean(side["reward"]),
        "rollout_tokens_per_generate_s": sum(tokens) / sum(gen),
        "rollout_tokens_per_step_s": sum(tokens) / sum(step),
    }


def bench_row(work: Path, preset: str, sizes: dict[str, Any], skip: int, rounds: int) -> dict:
    """One model: SFT once, then `rounds` rounds of ours and TRL from its export, the order alternating (ours
    first in even rounds) so that a machine drifting faster or slower over the run favours neither side; each
    side's steps after the warm-up are pooled over the rounds."""
    prompts, group, max_new, steps = (sizes[k] for k in ("prompts", "group", "max_new", "steps"))
    folder = api.run(sft_config(work, preset, sizes["sft_steps"]), overwrite=True).final
    ids = our_prompt_order(steps, prompts)
    sides: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for r in range(rounds):
        for name in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
            if name == "ours":
                sides[name].append(run_ours(work, folder, sizes, r))
            else:
                sides[name].append(run_trl(folder, ids, prompts, group, max_new, steps))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    prompt = build_task(TASK, PARAMS).instance(ids[0]).prompt
    ours_first = [tok.bos_token_id, *tok.encode(prompt, add_special_tokens=False)]
    assert all(list(t.pop("first_prompt_ids")) == ours_first for t in sides["trl"]), "TRL tokenizes differently"
    n = prompts * group
    pooled = {name: pool(runs, skip) for name, runs in sides.items()}
    row = {
        "preset": preset,
        "params": sum(p.numel() for p in model.parameters()),
        "attention": model.config._attn_implementation,
        "prompts": prompts,
        "group": group,
        "max_new_tokens": max_new,
        "steps": steps,
        "rounds": rounds,
        "warmup_skipped": skip,
        "ours_options": {k: sizes[k] for k in ("fused", "compiled", "lean")},
        "ours": summary(pooled["ours"], [n * x for x in pooled["ours"]["response_len"]]),
        "trl": summary(pooled["trl"], [n * x for x in pooled["trl"]["response_len"]]),
        "ratio_by_round": [
            statistics.median(o["step_s"][skip:]) / statistics.median(t["step_s"][skip:])
            for o, t in zip(sides["ours"], sides["trl"], strict=True)
        ],
        "raw": sides,
    }
    row["ratio_ours_over_trl"] = row["ours"]["step_median_s"] / row["trl"]["step_median_s"]
    return row


def pool(runs: list[dict[str, Any]], skip: int) -> dict[str, list[float]]:
    """Every per-step series of the runs, each run's first `skip` steps left out, joined; `wall_s`: the time
    between one step's end and the next's, within each run."""
    keys = [k for k, v in runs[0].items() if isinstance(v, list) and k != "wall_at"]
    joined = {k: [x for run in runs for x in run[k][skip:]] for k in keys}
    ends = [run["wall_at"][skip:] for run in runs]
    joined["wall_s"] = [b - a for at in ends for a, b in itertools.pairwise(at)]
    return joined


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
    ap.add_argument("--lean", action="store_true", help="Ours with sampler: grouped and objective.packed.")
    ap.add_argument("--rounds", type=int, default=2, help="Rounds of ours and TRL, alternating which goes first.")
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
            "lean": args.lean,
        }
        rows.append(bench_row(work, preset, sizes, args.warmup, args.rounds))
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
