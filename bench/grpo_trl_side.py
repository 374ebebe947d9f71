"""TRL's side of bench/grpo_vs_trl.py: its GRPOTrainer set up like our GRPO stage and timed per step. TRL is a
bench extra only (.venv-bench), never a runtime dependency."""

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from trainguard.tasks import build_task

TASK, PARAMS = "reverse", {"min_len": 3, "max_len": 6}
LR, CLIP_EPS, SEED = 1e-4, 0.2, 0


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
