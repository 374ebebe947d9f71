"""SFT step time: trainguard's engine (bare, guarded, with the fused AdamW kernel) vs a hand-written loop vs
transformers' Trainer vs TRL's SFTTrainer.

Same tiny model init, same batches (token ids, in order), same AdamW maths, same schedule, same seed. Every arm
runs alone, with fresh state, for the warm-up and timed steps; `--rounds` repeats them all, every other round in
reverse order, so drift in the machine's speed falls on all arms alike (arms interleaved step by step would evict
each other's weights and optimizer state from the cache, which the Trainer, running alone, never paid).
trainguard's time includes everything its loop does per step: the metrics (grad norm/max, weight norm, update
ratio), the SQLite write and, guarded, the data checks and detectors. The Trainer and TRL run at their default
AdamW (the fused kernel); `trainguard_fused` is ours with `optimizer.fused` (ours defaults to the multi-tensor
kernel so that recorded runs reproduce), `hand` uses the multi-tensor one like `trainguard`. TRL runs with its
gradient checkpointing and bf16 off (its defaults; a fair fp32 CPU comparison turns them off) and its own
collator; it lives only in .venv-bench, so in .venv it is skipped with a note. Every peer's first-step loss is
reported: fed the same tokens, they must agree.
With `--compile`, each side also runs with torch.compile (ours: `run.compile` with `optimizer.fused`; the
Trainer's and TRL's: `torch_compile`); compile time falls in the untimed warm-up.
Run: `make bench` or `python bench/engine_overhead.py`; with TRL: `.venv-bench/bin/python bench/engine_overhead.py`.
"""

import argparse
import copy
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from trainguard.config import ModelSection, OptimizerSection, StageSection
from trainguard.data.batches import collate
from trainguard.data.sources import RecordSource, tokenize_all
from trainguard.engine.checkpoint import Checkpointer
from trainguard.engine.loop import Engine
from trainguard.engine.optim import build_optimizer
from trainguard.engine.outcome import Hooks
from trainguard.engine.pieces import RunServices, StagePieces
from trainguard.engine.schedule import lr_at
from trainguard.engine.state import TrainState
from trainguard.guard.guard import Guard, GuardSection
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective
from trainguard.tasks import build_task
from trainguard.track.sinks import Sinks, StoreSink
from trainguard.track.store import MetricStore


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


LR, WARMUP, MIN_RATIO, CLIP = 3e-3, 5, 0.1, 1.0
PAD = 256


def hand_step(model, optimizer, examples, step: int, total: int) -> float:
    """What one writes by hand: collate, forward, completion-only CE, backward, clip, AdamW step."""
    batch = collate(examples, PAD)
    ids = batch.input_ids
    targets = ids[:, 1:].masked_fill(~batch.completion_mask[:, 1:], -100)
    logits = model(input_ids=ids).logits
    loss = (
        F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
        / (targets != -100).sum()
    )
    loss.backward()
    for g in optimizer.param_groups:
        g["lr"] = lr_at(step, LR, total, WARMUP, MIN_RATIO)
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def trainer_args(out: str, total: int, compiled: bool = False) -> dict:
    """What the Trainer and TRL share with our stage: steps, AdamW, the warmup + cosine schedule, the clip."""
    return {
        "torch_compile": compiled,
        "output_dir": out,
        "max_steps": total,
        "learning_rate": LR,
        "weight_decay": 0.01,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": MIN_RATIO},
        "warmup_steps": WARMUP,
        "max_grad_norm": CLIP,
        "logging_steps": 10**9,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }


def clocked(trainer_cls: type) -> type:
    """`trainer_cls` fed in dataset order, remembering its first loss (one sync, once) and each step's wall time,
    one on_step_begin to the next: like ours, a step pays for fetching its batch and for its bookkeeping (the
    Trainer fetches a step's batches before on_step_begin, so on_step_begin .. on_step_end alone would leave
    that out)."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, args, state, control, **kw):
            now = time.perf_counter()
            if self.t0 is not None:
                self.times.append(now - self.t0)
            self.t0 = now

        def on_train_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t0)

    class InOrder(trainer_cls):
        def __init__(self, *args, **kwargs):
            self.clock, self.first_loss = Clock(), None
            super().__init__(*args, callbacks=[self.clock], **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            if self.first_loss is None:
                self.first_loss = float((out[0] if return_outputs else out).detach())
            return out

    return InOrder


def trainer_step_times(model, batches, total: int, compiled: bool = False) -> tuple[list[float], float]:
    from transformers import Trainer, TrainingArguments

    class Batches(torch.utils.data.Dataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            b = batches[i]
            return {"input_ids": b.input_ids, "labels": b.input_ids.masked_fill(~b.completion_mask, -100)}

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(**trainer_args(out, total, compiled), per_device_train_batch_size=1)
        trainer = clocked(Trainer)(
            model=model, args=args, train_dataset=Batches(), data_collator=lambda items: items[0]
        )
        trainer.train()
    return trainer.clock.times, trainer.first_loss


def trl_step_times(model, picks, total: int, tok, compiled: bool = False) -> tuple[list[float], float] | None:
    """TRL's SFTTrainer on the same examples' token ids (prompt labels -100), `len(picks[0])` a batch in our
    order, padded by its own collator; None when TRL is not installed (it lives in .venv-bench only)."""
    try:
        from trl import SFTConfig as TrlSFTConfig
        from trl import SFTTrainer
    except ImportError:
        return None
    from datasets import Dataset

    rows = [
        {"input_ids": e.ids, "labels": [-100] * e.prompt_len + e.ids[e.prompt_len :]} for batch in picks for e in batch
    ]
    with tempfile.TemporaryDirectory() as out:
        args = TrlSFTConfig(
            **trainer_args(out, total, compiled),
            per_device_train_batch_size=len(picks[0]),
            activation_checkpointing=False,  # TRL's default is on: it recomputes activations, which ours never does
            bf16=False,  # TRL's default is bf16 autocast; every other peer here runs fp32
            fp16=False,
            max_length=None,  # our examples are already cut to the tokenizer's max_length
            shuffle_dataset=False,
        )
        trainer = clocked(SFTTrainer)(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
        )
        assert not trainer.model.is_activation_checkpointing and not trainer.args.bf16
        trainer.train()
    return trainer.clock.times, trainer.first_loss


def make_engine(init, examples, tok, stage, total: int, tmp: Path, guard: Guard | None, compiled: bool = False):
    """The real Engine with its metrics and SQLite store; returns (engine, store)."""
    model = copy.deepcopy(init)
    AcceleratorState._reset_state(reset_partial_state=True)  # a compiled Trainer before us left its dynamo setting
    accelerator = Accelerator(cpu=True)
    opt = build_optimizer({"model": model}, stage.optimizer)
    model, opt = accelerator.prepare(model, opt)
    model = torch.compile(model) if compiled else model  # what run.compile does
    tmp = Path(tempfile.mkdtemp(dir=tmp))  # a fresh store and checkpoint folder for every block
    store = MetricStore(tmp / "metrics.db")
    hooks = Hooks(
        event=lambda *a, **k: None,
        alert=lambda a: None,
        forget_after=store.truncate_after,
        decode=lambda ids: tok.batch_decode(ids, skip_special_tokens=True),
    )
    pieces = StagePieces(
        stage=stage,
        index=0,
        total_steps=total,
        model=model,
        objective=SFTObjective(SFTConfig(), ObjectiveContext(model, tok)),
        source=RecordSource(examples, stage.batch_size, 0, tok.pad_token_id),
        optimizer=opt,
        guard=guard,
    )
    services = RunServices(accelerator, TrainState(), Sinks([StoreSink(store)]), Checkpointer(tmp / "ck"), hooks)
    engine = Engine(pieces, services)
    model.train()
    return engine, store


def engine_arm(init, examples, tok, stage, total, tmp, guard, compiled=False):
    """One fresh engine run alone: (step times, losses)."""
    engine, store = make_engine(init, examples, tok, stage, total, tmp, guard, compiled)
    times, losses = [], []
    for _ in range(total):
        t0 = time.perf_counter()
        metrics, _, decision = engine.train_step()
        assert decision.action == "none", decision
        engine.state.stage_step += 1
        engine.state.global_step += 1
        engine.log(metrics)
        times.append(time.perf_counter() - t0)
        losses.append(metrics["loss/train"])
    store.close()
    return times, losses


def hand_arm(init, picks, total):
    model = copy.deepcopy(init)
    model.train()
    optimizer = build_optimizer({"model": model}, OptimizerSection(lr=LR))
    times, losses = [], []
    for step in range(total):
        t0 = time.perf_counter()
        losses.append(hand_step(model, optimizer, picks[step], step, total))
        times.append(time.perf_counter() - t0)
    return times, losses


def summary(args, times: dict, losses: dict, first_loss: dict, n_params: int, batches: list) -> dict:
    """The medians, the ratios the goals name, and the loss agreement, as the JSON this bench prints."""
    med = {name: statistics.median(t) for name, t in times.items()}

    def ratio(a: str, b: str) -> float | None:
        return round(med[a] / med[b], 3) if a in med and b in med else None

    max_diff = max(abs(a - b) for a, b in zip(losses["trainguard"], losses["hand"], strict=True))
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
        "torch": torch.__version__,
        "model_params": n_params,
        "batch": f"{args.batch_size} x ~{statistics.mean(b.input_ids.shape[1] for b in batches):.0f} tokens",
        "timed_steps": args.steps,
        "rounds": args.rounds,
        "layout": "each arm alone with fresh state, rounds in alternating order; peers at their default fused "
        "AdamW; trainguard_fused = optimizer.fused, trainguard_compiled = run.compile + optimizer.fused",
        "median_step_ms": {k: round(v * 1e3, 2) for k, v in med.items()},
        "ratio_vs_hand": ratio("trainguard", "hand"),
        "ratio_vs_hf_trainer": ratio("trainguard", "hf_trainer"),
        "ratio_vs_trl_sft": ratio("trainguard", "trl_sft"),
        "fused_vs_hf_trainer": ratio("trainguard_fused", "hf_trainer"),
        "fused_vs_trl_sft": ratio("trainguard_fused", "trl_sft"),
        "guard_overhead": ratio("trainguard+guard", "trainguard"),
        "compiled_vs_hf_trainer": ratio("trainguard_compiled", "hf_trainer"),
        "compiled_vs_hf_trainer_compiled": ratio("trainguard_compiled", "hf_trainer_compiled"),
        "compiled_vs_trl_sft": ratio("trainguard_compiled", "trl_sft"),
        "compiled_vs_trl_sft_compiled": ratio("trainguard_compiled", "trl_sft_compiled"),
        "loss_max_abs_diff_vs_hand": max_diff,
        # the hand loop computes every position's logits, ours only from the earliest target: sums differ in order
        "losses_within_1e-6": max_diff <= 1e-6 and losses["trainguard+guard"] == losses["trainguard"],
        "first_last_loss": [round(losses["trainguard"][0], 4), round(losses["trainguard"][-1], 4)],
        "first_step_loss": first_loss,
        "first_step_loss_max_abs_diff": max(abs(v - first_loss["trainguard"]) for v in first_loss.values()),
    }
    return result


def bench_stage(total: int, batch_size: int, fused: bool) -> StageSection:
    """The SFT stage every engine arm runs: the peers' steps, LR, schedule and clip."""
    return StageSection(
        name="bench",
        objective="sft",
        max_steps=total,
        batch_size=batch_size,
        optimizer=OptimizerSection(lr=LR, fused=fused),
        schedule={"warmup_steps": WARMUP, "min_lr_ratio": MIN_RATIO},
        max_grad_norm=CLIP,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50, help="timed steps (losses compared over these)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="every arm once per round, in turn reversed")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    ap.add_argument("--compile", action="store_true", help="also time every side with torch.compile")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    total = args.steps + args.warmup

    tok = byte_tokenizer()
    task = build_task("reverse", {"min_len": 3, "max_len": 8})
    examples = tokenize_all([task.record(i) for i in range(4000)], tok, 64).examples
    init = build_model(ModelSection(preset="tiny"), tok, 64, seed=0)
    src = RecordSource(examples, args.batch_size, 0, tok.pad_token_id)  # the same stream the engine draws
    picks = [
        [examples[src.sample_index(i)] for i in range(s * args.batch_size, (s + 1) * args.batch_size)]
        for s in range(total)
    ]
    batches = [collate(p, PAD) for p in picks]

    tmp = Path(tempfile.mkdtemp())

    def engine(guard: bool = False, fused: bool = False, compiled: bool = False):
        def go():
            watch = Guard(GuardSection()) if guard else None  # fresh detectors every block
            stage = bench_stage(total, args.batch_size, fused)
            return (*engine_arm(init, examples, tok, stage, total, tmp, watch, compiled), None)

        return go

    def peer(fn, *extra, compiled: bool = False):
        def go():
            got = fn(copy.deepcopy(init), *extra, total, *((tok,) if fn is trl_step_times else ()), compiled=compiled)
            return None if got is None else (got[0], [], got[1])

        return go

    arms = {
        "trainguard": engine(),
        "trainguard+guard": engine(guard=True),
        "trainguard_fused": engine(fused=True),
        "hand": lambda: (*hand_arm(init, picks, total), None),
        "hf_trainer": peer(trainer_step_times, batches),
        "trl_sft": peer(trl_step_times, picks),
    }
    if args.compile:  # ours at its fastest settings: run.compile and optimizer.fused
        arms |= {
            "trainguard_compiled": engine(fused=True, compiled=True),
            "hf_trainer_compiled": peer(trainer_step_times, batches, compiled=True),
            "trl_sft_compiled": peer(trl_step_times, picks, compiled=True),
        }
    times: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}
    first_loss: dict[str, float] = {}
    for r in range(args.rounds):
        for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:  # each arm alone, fresh; order alternates
            torch._dynamo.reset()  # every compiled block compiles afresh, in its own warm-up
            got = arms[name]()
            if got is None:
                print(f"note: TRL is not installed here, so {name} is skipped (it lives in .venv-bench)")
                continue
            step_times, step_losses, first = got
            times.setdefault(name, []).extend(step_times[args.warmup :])  # compiling happens in the warm-up
            if r == 0:
                losses[name] = step_losses[args.warmup :]
                first_loss[name] = first if first is not None else step_losses[0]
    shutil.rmtree(tmp, ignore_errors=True)
    result = summary(args, times, losses, first_loss, sum(p.numel() for p in init.parameters()), batches)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    assert math.isfinite(result["ratio_vs_hand"])


if __name__ == "__main__":
    main()
