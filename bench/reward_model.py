"""Reward-model acceptance: train examples/reward.yaml on verified reverse pairs, then measure on held-out
prompts (ids no training row uses) how often it prefers the right answer and how well its scores follow the
verifier's (Pearson r). Two held-out sets: pairs made exactly as `data collect --pairs` makes them (one near
miss per prompt), and every distinct near miss of four draws per prompt (a harder, 1:3.5 mix).
Run: `python bench/reward_model.py [--n 3000 --heldout 500]`; prints a JSON line."""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

from trainguard import api
from trainguard.data.collect import collect
from trainguard.objectives.reward import pearson
from trainguard.reward import load_reward_model
from trainguard.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"min_len": 3, "max_len": 5}  # as examples/reward.yaml's SFT data


def scored(model, tokenizer, prompts: list[str], answers: list[str]) -> torch.Tensor:
    chunks = range(0, len(prompts), 64)
    return torch.cat([model.get_rewards(prompts[i : i + 64], answers[i : i + 64], tokenizer) for i in chunks])


def heldout_scores(folder: Path, task_name: str, ids: range, params: dict | None = None) -> dict[str, float]:
    """Pair accuracy and r(reward, verifier score) on held-out pairs, and over every near miss."""
    model, tokenizer = load_reward_model(folder)
    task = build_task(task_name, params or {})
    out: dict[str, float] = {"heldout_prompts": len(ids)}
    for name, draws in (("pairs", 1), ("near_misses", 4)):
        prompts, answers, verdicts, group = [], [], [], []
        for id in ids:
            inst = task.instance(id)
            rng = random.Random(f"wrong:{task_name}:{id}")  # as data collect draws its rejected answers
            tries = dict.fromkeys(task.wrong_completion(inst, rng) for _ in range(8 * draws))
            wrong = [w for w in tries if task.score(inst, w).value == 0][:draws]
            for answer in [inst.reference, *wrong]:
                prompts.append(inst.prompt)
                answers.append(answer)
                verdicts.append(task.score(inst, answer).value)
                group.append(id)
        rewards = scored(model, tokenizer, prompts, answers).tolist()
        best: dict[int, float] = {}
        wins = []
        for g, reward, verdict in zip(group, rewards, verdicts, strict=True):
            if verdict == 1.0:
                best[g] = reward
            else:
                wins.append(best[g] > reward)
        out[f"{name}_count"] = len(wins)
        out[f"{name}_accuracy"] = sum(wins) / len(wins)
        out[f"{name}_verifier_pearson"] = pearson(torch.tensor(rewards), torch.tensor(verdicts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="training pairs to collect")
    parser.add_argument("--heldout", type=int, default=500, help="held-out prompts (ids far from training's)")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args()
    os.chdir(ROOT)
    start = time.perf_counter()
    pairs = ROOT / "data" / "reverse_pairs.jsonl"
    report = collect([build_task("reverse", WORDS)], args.n, pairs, seed=0, pairs=True)
    overrides = [f"run.out_dir={args.out}", "run.name=reward-bench"]
    result = api.run(ROOT / "examples" / "reward.yaml", overrides=overrides, overwrite=True)
    trained = time.perf_counter() - start
    heldout = range(2_000_000_000, 2_000_000_000 + args.heldout)  # far from every training id
    assert result.final is not None
    scores = heldout_scores(result.final, "reverse", heldout, WORDS)
    record = {"pairs": report.written + report.resumed, "seconds_total": round(trained, 1), **scores}
    record |= {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print(json.dumps(record))


if __name__ == "__main__":
    sys.exit(main())
