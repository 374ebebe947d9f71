"""RL adds what imitation cannot: from SFT on a weak teacher's demonstrations (half of them wrong), GRPO and PPO
with the task's verifier against more SFT on the same demonstrations. Held-out greedy accuracy (n = 500) with
Jeffreys 80% intervals: at the SFT start, every 50 RL steps, at the 2-minute mark of RL training time, and at
every 100 steps of an SFT run five times as long (its best is what more SFT reaches).

    python bench/rl_lift.py [--out bench/rl_lift.json]      (about 10 minutes on 2 cores)"""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainguard import api
from trainguard.data.records import load_records
from trainguard.eval.accuracy import heldout_instances, task_accuracy
from trainguard.eval.intervals import jeffreys_interval
from trainguard.tasks import build_task
from trainguard.track.store import read_metrics

ROOT = Path(__file__).resolve().parents[1]
N, BUDGET_S = 500, 120.0
RL_STEPS = {"grpo": 1000, "ppo": 400}  # past the 2-minute mark on 2 cores


def point(correct: float, n: int, **where: Any) -> dict[str, Any]:
    lo, hi = jeffreys_interval(correct, n)
    return {**where, "accuracy": correct / n, "ci80": [round(lo, 4), round(hi, 4)], "n": n}


def rl_curve(run: Path, first_step: int) -> list[dict[str, Any]]:
    """eval/accuracy of the RL stage with the RL training seconds (sum of step times) up to each eval."""
    rows = read_metrics(run / "metrics.db")
    times = sorted((s, v) for s, _, k, v, _ in rows if k == "perf/step_time_s" and s > first_step)
    evals = sorted(
        (s, v, n)
        for (s, v), n in zip(
            [(s, v) for s, _, k, v, _ in rows if k == "eval/accuracy"],
            [v for _, _, k, v, _ in rows if k == "eval/n"],
            strict=True,
        )
    )
    out = []
    for step, acc, n in evals:
        seconds = sum(t for s, t in times if s <= step)
        out.append(point(round(acc * n), int(n), step=step - first_step, train_s=round(seconds, 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "rl_lift.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="rl-lift-"))
    result: dict[str, Any] = {"machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}"}

    base = api.load_config(ROOT / "examples" / "grpo.yaml", [f"run.out_dir={work}"])
    train = {r["prompt"] for r in load_records(base.data, base.run.seed).train}
    task = build_task("reverse", {"min_len": 3, "max_len": 6})
    held = heldout_instances(task, N, train)

    def accuracy(model: Any, tok: Any) -> int:
        return task_accuracy(model, tok, task, held, max_new_tokens=10, batch_size=100).correct

    for name in ("grpo", "ppo"):
        cfg = api.load_config(
            ROOT / "examples" / f"{name}.yaml", [f"run.out_dir={work}", f"stages.1.max_steps={RL_STEPS[name]}"]
        )
        run = api.run(cfg, overwrite=True).path
        sft = run / "exports" / "sft"
        start = accuracy(AutoModelForCausalLM.from_pretrained(sft), AutoTokenizer.from_pretrained(sft))
        curve = rl_curve(run, cfg.stages[0].max_steps)
        at_budget = [p for p in curve if p["train_s"] <= BUDGET_S][-1]
        result[name] = {"start": point(start, N), "curve": curve, "at_2_minutes": at_budget}
        print(name, result[name]["start"], at_budget, flush=True)

    sft_cfg = api.load_config(
        ROOT / "examples" / "grpo.yaml",
        [
            f"run.out_dir={work}",
            "run.name=more-sft",
            f"stages=[{json.dumps(base.stages[0].model_dump(mode='json'))}]",
            "stages.0.max_steps=1000",
            "stages.0.save_every=100",
            "stages.0.save_total_limit=null",
        ],
    )
    run = api.run(sft_cfg, overwrite=True).path
    model, tok = AutoModelForCausalLM.from_pretrained(run / "final"), AutoTokenizer.from_pretrained(run / "final")
    curve = []
    for ckpt in sorted((run / "checkpoints").glob("step-*"))[1:]:
        model.load_state_dict(load_file(ckpt / "model.safetensors"))
        curve.append(point(accuracy(model, tok), N, step=int(ckpt.name.split("-")[1])))
    result["more_sft"] = {"curve": curve, "best": max(curve, key=lambda p: p["accuracy"])}
    print("more sft", result["more_sft"]["best"], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump({k: v.get("at_2_minutes", v.get("best")) for k, v in result.items() if isinstance(v, dict)}, sys.stdout)


if __name__ == "__main__":
    main()
