"""`trainguard faults bench`: every fault type x 3 onsets x 2 magnitudes on the tiny model, plus clean
runs, measuring detection, latency, the action taken and recovery. The guard's step-time overhead is
measured step by step interleaved, in bench/engine_overhead.py."""

import io
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from trainguard.config import RunConfig, parse_config
from trainguard.engine.outcome import GuardStop
from trainguard.engine.pipeline import Pipeline
from trainguard.rundir import RunDir
from trainguard.track.store import read_metrics, read_table

# Onsets as shares of the run (75, 103 and 131 of the default 160 steps), so a shorter `--steps` still puts
# every fault inside the run instead of reporting faults that never fired.
ONSET_SHARES = (75 / 160, 103 / 160, 131 / 160)


def onsets(steps: int) -> list[int]:
    return sorted({max(2, round(share * steps)) for share in ONSET_SHARES})


# fault kind -> two variants of (magnitude, duration, extra spec keys)
VARIANTS: dict[str, list[tuple[float, int, dict[str, Any]]]] = {
    "nan_loss": [(1.0, 1, {}), (1.0, 3, {})],
    "inf_grad": [(1.0, 1, {}), (1.0, 3, {})],
    "lr_spike": [(10.0, 3, {}), (100.0, 3, {})],
    "grad_spike": [(100.0, 1, {}), (1000.0, 1, {})],
    "corrupt_batch": [(0.5, 1, {"mode": "random_tokens"}), (1.0, 1, {"mode": "repeat_ngram"})],
    "contaminate": [(0.25, 1, {}), (1.0, 1, {})],
    "dead_units": [(0.5, 1, {}), (1.0, 1, {})],
}


def base_config(out: Path, name: str, seed: int, steps: int) -> dict[str, Any]:
    return {
        "run": {"name": name, "seed": seed, "out_dir": str(out), "threads": 1},
        "model": {"preset": "tiny"},
        "tokenizer": {"max_length": 64},
        "data": {
            "sources": [{"task": "reverse", "n": 3000, "params": {"min_len": 3, "max_len": 8}}],
            "eval_fraction": 0.05,
        },
        "stages": [
            {
                "name": "sft",
                "objective": "sft",
                "max_steps": steps,
                "batch_size": 16,
                "optimizer": {"lr": 1e-3},
                "schedule": {"warmup_steps": 20},
                "eval_every": 50,
                "save_every": 10,
                "save_total_limit": 4,
            }
        ],
        "tracking": {"tensorboard": False, "progress": "off"},
    }


def run_once(cfg: RunConfig) -> dict[str, Any]:
    """Train in-process; returns the final eval loss, alerts, actions and step times."""
    console = Console(file=io.StringIO())
    pipeline = Pipeline(cfg, console)
    run = RunDir.create(cfg, overwrite=True)
    stopped = False
    try:
        pipeline.attach(run)
        pipeline.run_all(resume=False)
    except GuardStop:
        stopped = True
    finally:
        run.close(status="stopped" if stopped else "completed")
    db = run.path / "metrics.db"
    metrics = read_metrics(db)
    eval_losses = [v for _, _, k, v, _ in metrics if k == "loss/eval"]
    return {
        "stopped": stopped,
        "final_eval_loss": eval_losses[-1] if eval_losses and not stopped else None,
        "alerts": read_table(db, "alerts"),
        "actions": [e for e in read_table(db, "events") if e["kind"] == "action"],
        "step_times": [v for _, _, k, v, _ in metrics if k == "perf/step_time_s"],
    }


def scenario_row(
    kind: str, onset: int, magnitude: float, duration: int, seed: int, out: dict[str, Any], clean_loss: float | None
) -> dict[str, Any]:
    alerts = [a for a in out["alerts"] if a["step"] is not None and a["step"] >= onset and a["severity"] != "info"]
    first = min(alerts, key=lambda a: a["step"]) if alerts else None
    actions = [json.loads(a["data"]).get("action") for a in out["actions"]]
    loss = out["final_eval_loss"]
    recovered = loss is not None and clean_loss is not None and loss <= 1.05 * clean_loss
    return {
        "fault": kind,
        "onset": onset,
        "magnitude": magnitude,
        "duration": duration,
        "seed": seed,
        "detected": first is not None,
        "latency": first["step"] - onset if first else None,
        "first_alert": first["kind"] if first else None,
        "actions": sorted(set(filter(None, actions))),
        "recovered": recovered,
        "final_eval_loss": loss,
        "clean_eval_loss": clean_loss,
    }


def run_bench(steps: int = 160, clean_seeds: int = 10, progress: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        clean: dict[int, dict[str, Any]] = {}
        for seed in range(clean_seeds):
            clean[seed] = run_once(parse_config(base_config(out, f"clean-{seed}", seed, steps)))
            bad = [a for a in clean[seed]["alerts"] if a["severity"] != "info"]
            progress(
                f"clean seed {seed}: eval loss {clean[seed]['final_eval_loss']:.4f}, alerts above info: {len(bad)}"
            )
        rows = []
        i = 0
        for kind, variants in VARIANTS.items():
            for onset in onsets(steps):
                for magnitude, duration, extra in variants:
                    seed = i % clean_seeds
                    i += 1
                    tree = base_config(out, f"{kind}-{onset}-{magnitude}", seed, steps)
                    tree["faults"] = [
                        {"kind": kind, "at_step": onset, "duration": duration, "magnitude": magnitude, **extra}
                    ]
                    res = run_once(parse_config(tree))
                    row = scenario_row(kind, onset, magnitude, duration, seed, res, clean[seed]["final_eval_loss"])
                    rows.append(row)
                    progress(
                        f"{kind:14s} onset {onset:3d} x{magnitude:<6g} for {duration} step(s) "
                        f"detected={row['detected']!s:5s} "
                        f"latency={row['latency']} actions={row['actions']} recovered={row['recovered']}"
                    )
    clean_alerts = sum(1 for c in clean.values() for a in c["alerts"] if a["severity"] != "info")
    return {
        "scenarios": rows,
        "clean_runs": clean_seeds,
        "clean_alerts_above_info": clean_alerts,
        "summary": summarize(rows),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def share(pred: Callable[[dict[str, Any]], bool], subset: list[dict[str, Any]]) -> float:
        return sum(map(pred, subset)) / len(subset) if subset else float("nan")

    by_kind: dict[str, Any] = {}
    for kind in VARIANTS:
        sub = [r for r in rows if r["fault"] == kind]
        lat = [r["latency"] for r in sub if r["latency"] is not None]
        by_kind[kind] = {
            "recall": share(lambda r: r["detected"], sub),
            "median_latency": statistics.median(lat) if lat else None,
            "recovered": share(lambda r: r["recovered"], sub),
        }
    return {
        "by_fault": by_kind,
        "recall": share(lambda r: r["detected"], rows),
        "recovered": share(lambda r: r["recovered"], rows),
    }
