"""PID Lagrangian vs plain gradient ascent (and safe-rlhf's log-λ) on a noisy constraint, side by side.

The plant: one parameter x trained by SGD (momentum 0.9, lr 0.01) on a task loss 0.15·(x − 4)² that wants
x = 4, while a verifier flags each of 32 samples per step with probability p(x) = σ(2(x − 2)). The dual
update reads the flagged fraction (noisy, not differentiable); the gradient flows through the surrogate p(x).
Target p ≤ 0.1, so x* = 2 − ln 9 / 2 ≈ 0.901 and λ* = 0.3·(4 − x*) / (2·0.1·0.9) ≈ 5.16. Every controller
starts at λ = 0.5 and must wind up to λ*, which is where pure integral control overshoots. Stats are taken
on the true p(x) (the record the metrics store keeps, fed the noise-free cost). ga and pid share the
integral rate η = 0.2; safe_rlhf's rate multiplies λ (d log λ = η·λ·Δ), so it gets the best of a small sweep
(η ∈ {0.005, 0.02, 0.05} × window ∈ {16, 128}).
Run: `.venv/bin/python bench/constraints_pid.py` (~15 s; writes bench/constraints_pid.json).
"""

import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from trainguard.constraints import ConstraintTracker, DualOptimizer

TARGET, STEPS, SEEDS, SAMPLES, ETA = 0.1, 2000, range(8), 32, 0.2
BAND = 1.2  # "above target" means p > 1.2·target, so steady-state jitter around the target is not counted
X_STAR = 2 - math.log(9) / 2
LAMBDA_STAR = 0.3 * (4 - X_STAR) / (2 * TARGET * (1 - TARGET))
CONTROLLERS = {
    "ga (η=0.2)": ({"name": "ga"}, ETA),
    "safe_rlhf (η=0.05, window 16)": ({"name": "safe_rlhf", "window": 16}, 0.05),
    "pid P+I (kp=10, ki=η)": ({"name": "pid", "kp": 10.0}, ETA),
    "pid P+I+D (kp=10, ki=η, kd=20)": ({"name": "pid", "kp": 10.0, "kd": 20.0}, ETA),
}


def violation_prob(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(2 * (x - 2))


def run(controller: dict, eta: float, seed: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.01, momentum=0.9)
    spec = {"name": "violation", "target": TARGET, "dual_lr": eta, "lambda_init": 0.5, "lambda_max": 50.0}
    dual = DualOptimizer([{**spec, "controller": controller}])
    truth = ConstraintTracker(history=STEPS)
    costs, lams = [], []
    for _ in range(STEPS):
        task = 0.15 * (x - 4) ** 2
        loss = dual.compute_lagrangian(task, {"violation": violation_prob(x)})
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            p = violation_prob(x).item()
            flagged = torch.bernoulli(torch.full((SAMPLES,), p), generator=gen).mean().item()  # the verifier
        lam = dual.update_duals({"violation": flagged})["violation"]
        truth.record(p, TARGET, lam)
        costs.append(p)
        lams.append(lam)
    tail = slice(-500, None)
    return {
        "peak_overshoot": truth.overshoot,
        "steps_above_band": sum(c > BAND * TARGET for c in costs),
        "steps_above_target": truth.steps_above,
        "cumulative_violation": sum(max(0.0, c - TARGET) for c in costs),
        "crossings": truth.oscillation,
        "final_cost": statistics.mean(costs[tail]),
        "final_lambda": statistics.mean(lams[tail]),
        "final_x": x.item(),
    }


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        k: {"mean": statistics.mean(r[k] for r in runs), "std": statistics.stdev(r[k] for r in runs)} for k in runs[0]
    }


def table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = [
        ("peak_overshoot", "peak overshoot", 3),
        ("steps_above_band", f"steps above {BAND:g}×target", 0),
        ("cumulative_violation", "Σ violation", 1),
        ("crossings", "target crossings", 0),
        ("final_cost", "final cost", 3),
        ("final_lambda", f"final λ (λ*={LAMBDA_STAR:.2f})", 2),
    ]
    lines = ["| controller | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, s in summary.items():
        cells = [f"{s[k]['mean']:.{d}f} ± {s[k]['std']:.{d}f}" for k, _, d in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    per_seed = {label: [run(ctrl, eta, s) for s in SEEDS] for label, (ctrl, eta) in CONTROLLERS.items()}
    summary = {label: summarise(runs) for label, runs in per_seed.items()}
    seconds = time.perf_counter() - start
    print(f"{STEPS} steps × {len(SEEDS)} seeds, target {TARGET}, {SAMPLES} verifier samples/step, {seconds:.1f} s\n")
    print(table(summary))
    out = {
        "setup": {
            "target": TARGET,
            "steps": STEPS,
            "seeds": list(SEEDS),
            "samples_per_step": SAMPLES,
            "band": BAND,
            "x_star": X_STAR,
            "lambda_star": LAMBDA_STAR,
            "controllers": {label: {"controller": c, "dual_lr": eta} for label, (c, eta) in CONTROLLERS.items()},
        },
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "seconds": seconds},
        "summary": summary,
        "per_seed": per_seed,
    }
    Path(__file__).with_name("constraints_pid.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
