"""The pipeline: stages in order inside one run folder, each handing its model to the next by folder."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from trainguard import ranks
from trainguard.atomic import atomic_write_json
from trainguard.config import RunConfig, StageSection
from trainguard.data.mix import MixSourceConfig
from trainguard.data.records import RecordSet, load_records
from trainguard.engine.checkpoint import Checkpoint, Checkpointer
from trainguard.engine.device import configure_torch
from trainguard.engine.flops import peak_flops
from trainguard.engine.loop import Engine
from trainguard.engine.outcome import GuardStop, Hooks, StageResult
from trainguard.engine.pieces import RunServices
from trainguard.engine.review import DeploymentRejected, RunReview
from trainguard.engine.sharding import gathered, is_sharded
from trainguard.engine.stage import StageBuilder
from trainguard.engine.state import Knobs, TrainState, WorldMemory, seed_everything
from trainguard.errors import RunDirError
from trainguard.eval.accuracy import generate_text, heldout_instances, task_accuracy
from trainguard.guard.alerts import Alert, at_least
from trainguard.guard.data_checks import DataChecks
from trainguard.guard.faults import FaultInjector
from trainguard.guard.generation import GenerationChecks
from trainguard.guard.guard import Guard, GuardSection
from trainguard.guard.report import write_guard_report
from trainguard.models.bdh import is_bdh
from trainguard.models.loading import export_model, load_tokenizer
from trainguard.rundir import RunDir
from trainguard.sandbox import pool as sandbox_pool
from trainguard.tasks import build_task
from trainguard.track.sinks import Sinks, StoreSink, TensorBoardSink
from trainguard.track.store import read_table
from trainguard.track.summary import stage_summaries
from trainguard.ui.console import alert_markup
from trainguard.ui.progress import StageProgress, progress_enabled, summary_table
from trainguard.ui.verdict import scorecard_table, verdict_lines


@dataclass
class PipelineResult:
    stages: list[StageResult] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Builds each stage's pieces from the config and runs them; resumes from the newest checkpoint."""

    def __init__(self, cfg: RunConfig, console: Console) -> None:
        """Load the tokenizer and the data first: bad data stops here, before any run folder is made."""
        self.cfg, self.console = cfg, console
        self.accelerator = configure_torch(cfg.run)
        sandbox_pool.use(cfg.sandbox)  # where the tasks' sandboxed programs run
        seed_everything(cfg.run.seed)
        self.tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
        self.state, self.world = TrainState(), WorldMemory()
        self.faults = self._fault_injector()
        self._load_data()

    def _fault_injector(self) -> FaultInjector | None:
        """One injector for the whole run: faults belong to the world, not to a stage."""
        if not self.cfg.faults:
            return None
        tok = self.tokenizer
        encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
        return FaultInjector(self.cfg.faults, len(tok), encode, tok.pad_token_id, self.cfg.run.seed)

    def _load_data(self) -> None:
        """The run's records, and each stage's own (`source.data`) where it has them."""
        self.data_notes: list[tuple[str, str, dict[str, Any]]] = []
        run_records = load_records(self.cfg.data, self.cfg.run.seed)
        self.records: list[RecordSet] = []
        for stage in self.cfg.stages:
            own = stage.source.data
            self.records.append(run_records if own is None else load_records(own, self.cfg.run.seed))
        for stage, records in zip(self.cfg.stages, self.records, strict=True):
            if isinstance(stage.source, MixSourceConfig):
                stage.source.check(records)  # a mix naming no group of its records fails before any stage trains
        distinct = list({id(r): r for r in self.records}.values())
        for report in (report for records in distinct for report in records.reports):
            severity = "warning" if report.bad else "info"
            self.data_notes.append((severity, report.summary(), {"bad": dict(report.bad)}))
        self.records_by_source = [pair for records in distinct for pair in records.by_source]
        self.train_prompts = {r["prompt"] for recs in self.records for r in recs.train}
        self.eval_prompts = [r["prompt"] for r in self.records[0].eval]

    def attach(self, run: RunDir) -> None:
        """Bind the run folder: data notes go to its event log (once: a resumed run has them already),
        checkpoints to its checkpoints/."""
        self.run = run
        self.checkpointer = Checkpointer(run.checkpoints)
        self.builder = StageBuilder(self.cfg, run, self.tokenizer, self.accelerator, self.records)
        self.review = RunReview(
            self.cfg, self.tokenizer, run.eval_dir, self.train_prompts, self._task_params, self.builder.trained_tasks
        )
        assert run.store is not None
        recorded = run.store.has_event("data")
        for severity, message, data in self.data_notes:
            if not recorded:
                run.event("data", message, severity=severity, **data)
            if severity != "info":
                self.console.print(f"[yellow]warning:[/] {escape(message)}")
        guard = self.cfg.guard
        if guard.enabled and guard.data.enabled and not recorded:
            checks = DataChecks(guard.data)
            for source, records in self.records_by_source:
                for alert in checks.check_records(source, records):
                    self.record_alert(alert, None)

    def record_alert(self, alert: Alert, stage: str | None) -> None:
        """Alerts go to metrics.db, events.jsonl and, from warnings up, the console."""
        self.run.alert(alert.to_dict(), stage)
        if at_least(alert.severity, "warning"):
            self.console.print(alert_markup(alert), highlight=False)

    def event(
        self,
        kind: str,
        message: str,
        severity: str = "info",
        stage: str | None = None,
        at: int | None = None,
        **data: Any,
    ) -> None:
        """Record an event at step `at` (default: the current step); the guard's actions are also printed."""
        self.run.event(kind, message, self.state.global_step if at is None else at, stage, severity, **data)
        if kind == "action":
            self.console.print(f"[bold magenta]action:[/] {escape(message)}", highlight=False)
        elif kind == "gate":
            self.console.print(escape(message), highlight=False)

    # -- resume ----------------------------------------------------------------------------------------
    def find_resume_point(self) -> Checkpoint | None:
        removed = self.checkpointer.remove_partial() if ranks.is_main() else []
        ranks.barrier()  # no process reads checkpoints/ while rank 0 clears it
        if removed:
            self.console.print(f"[yellow]warning:[/] removed unfinished checkpoint writes: {', '.join(removed)}")

        def warn(msg: str) -> None:
            self.console.print(f"[yellow]warning:[/] {escape(msg)}")
            self.run.event("checkpoint", msg, severity="warning")

        latest = self.checkpointer.latest(warn=warn)
        if latest is not None and (saved := latest.manifest.get("world_size", 1)) != self.accelerator.num_processes:
            raise RunDirError(
                f"{latest.path.name} was written by {saved} process(es) and this run has "
                f"{self.accelerator.num_processes}: each rank's data shard and RNG state are per process, so resume "
                f"with the same world size (torchrun --nproc_per_node {saved}), or start a new run"
            )
        assert self.run.store is not None
        dropped = self.run.store.truncate_after(latest.step if latest else 0)
        if latest is not None:
            self.state.load_state_dict(latest.rank_state()[0]["train"])
            self.console.print(f"resuming from {latest.path.name} (stage {latest.manifest['stage']})")
        self.event("resume", f"resumed from {latest.path.name if latest else 'the start'}", dropped_metric_rows=dropped)
        return latest

    # -- stages ----------------------------------------------------------------------------------------
    def run_all(self, resume: bool) -> PipelineResult:
        latest = self.find_resume_point() if resume else None
        result = PipelineResult()
        purge = latest.step + 1 if latest else None
        sinks = [StoreSink(self.run.store)]  # type: ignore[arg-type]
        if self.cfg.tracking.tensorboard and ranks.is_main():
            sinks.append(TensorBoardSink(self.run.tb, purge_step=purge))
        self.sinks = Sinks(sinks)
        try:
            for index, stage in enumerate(self.cfg.stages):
                if index < self.state.stage_index:
                    continue
                resume_here = latest if latest is not None and latest.manifest["stage_index"] == index else None
                result.stages.append(self.run_stage(index, stage, resume_here, result))
            verdict = table = card = None
            if ranks.is_main():  # the end-of-run reviews judge the one final model once
                result.accuracy["after"] = self.measure_accuracy("after", self.final_model, force=True)
                verdict = self.review.deployment(
                    self.final_model, self.run.final, self.state.global_step, self.open_alerts()
                )
                table = self.review.final_table(self.final_model)
                card = self.review.scorecard(self.final_model)
        except GuardStop as stop:
            write_guard_report(self.run, str(stop))
            raise
        finally:
            self.sinks.close()
        summaries = stage_summaries(self.run.path / "metrics.db")
        self.console.print(summary_table(str(self.run.path), summaries, self.accuracy_path()))
        if table is not None:
            from trainguard.eval.report import eval_table, skills_table

            self.console.print(eval_table(table))
            if (skills := self.run.eval_dir / "skills.json").is_file():
                self.console.print(skills_table(json.loads(skills.read_text())["points"]))
        if card is not None:
            self.console.print(scorecard_table(card["scorecard"], card["verdict"]))
        if verdict is not None:
            word = "approved" if verdict.approved else "rejected"
            self.event(
                "deployment",
                f"deployment gate {word}",
                "info" if verdict.approved else "warning",
                approved=verdict.approved,
                reasons=verdict.reasons,
            )
            for line in verdict_lines(verdict, self.run.final / "verdict.json"):
                self.console.print(line, highlight=False)
            if not verdict.approved and self.cfg.deployment is not None and self.cfg.deployment.on_reject == "fail":
                raise DeploymentRejected(
                    f"the deployment gate rejected the final model: {'; '.join(verdict.reasons)} "
                    f"(see {self.run.final / 'verdict.json'})"
                )
        return result

    def open_alerts(self) -> list[str]:
        """The run's alignment and forgetting alerts, which a deployment gate that blocks on alerts reads."""
        kinds = {"capability_spike", "unexpected_capability", "objective_misalignment", "behaviour_drift", "forgetting"}
        rows = read_table(self.run.path / "metrics.db", "alerts")
        return [f"{r['kind']} at step {r['step']} ({r['stage']})" for r in rows if r["kind"] in kinds]

    def run_stage(
        self, index: int, stage: StageSection, ckpt: Checkpoint | None, result: PipelineResult
    ) -> StageResult:
        last = index == len(self.cfg.stages) - 1
        knobs = Knobs()  # a new stage starts at its configured LR and clip
        pieces, companions = self.builder.build(index, knobs)
        policy = self.accelerator.unwrap_model(pieces.model, keep_torch_compile=False)
        origin = self.builder.start(index)
        whole = lambda: gathered(policy, lambda: self.builder.model(index, origin))  # noqa: E731 (rank 0; collective)
        if index == 0 and (before := whole()) is not None:
            result.accuracy["before"] = self.measure_accuracy("before", before)
            self.review.skills("before", before)
        pieces.generation = self.generation_checks(pieces.guard, self.cfg.stage_guard(index))
        heads = {k: self.accelerator.unwrap_model(h) for k, h in pieces.heads.items()}
        services = RunServices(
            accelerator=self.accelerator,
            state=self.state,
            sinks=self.sinks,
            checkpointer=self.checkpointer,
            hooks=Hooks(
                event=lambda kind, msg, severity="info", **data: self.event(kind, msg, severity, stage.name, **data),
                alert=lambda alert: self.record_alert(alert, stage.name),
                forget_after=self.sinks.forget_after,
                on_best=(lambda: self.export(whole(), self.run.best, heads))
                if ranks.is_main() or is_sharded(policy)
                else None,
                decode=lambda ids: self.tokenizer.batch_decode(ids, skip_special_tokens=True),
            ),
            knobs=knobs,
            world=self.world,
            faults=self.faults,
            checkpoint_meta={"config": self.cfg.model_dump(mode="json"), "world_size": self.accelerator.num_processes},
            peak_flops=self.device_peak(policy),
        )
        engine = Engine(pieces, services)
        self.record_companions(stage, companions)
        if ckpt is not None:
            engine.load(ckpt)
        else:
            self.state.stage_index, self.state.stage_step, self.state.best_value = index, 0, None
            self.event("stage_start", f"stage {stage.name}: {pieces.total_steps} steps", stage=stage.name)
            self.announce(index, pieces)
            for severity, message, data in pieces.source.notes():
                self.event("data", message, severity, stage.name, **data)
            if pieces.guard is not None and "rollback" in pieces.guard.policies.values():
                engine.save()  # a healthy place to roll back to before the first save_every
        enabled = progress_enabled(self.cfg.tracking.progress, self.console)
        log_every = self.cfg.tracking.log_every
        start = self.state.stage_step
        with StageProgress(self.console, stage.name, pieces.total_steps, start, enabled, log_every) as progress:
            engine.progress = progress
            stage_result = engine.fit()
        self.final_model = plain = whole()
        self.export(plain, self.run.stage_export(stage.name, last), heads)
        ranks.barrier()  # the next stage starts from this export on every process
        self.event("stage_end", f"stage {stage.name} done at step {self.state.global_step}", stage=stage.name)
        if stage.objective.name not in ("reward", "cost") and plain is not None:  # those train a scorer
            if not last:
                self.measure_accuracy(f"after-{stage.name}", plain)  # the lift each stage adds, once
            for alert in self.review.forgetting(index, plain, self.state.global_step):
                self.record_alert(alert, stage.name)
            self.review.skills(stage.name, plain)
        return stage_result

    def export(self, model: torch.nn.Module | None, folder: Path, heads: dict[str, torch.nn.Module]) -> None:
        """Rank 0 writes the export; `model` is None on the other ranks of a sharded run (see gathered)."""
        if model is not None and ranks.is_main():
            export_model(model, self.tokenizer, folder, heads=heads)

    def device_peak(self, policy: torch.nn.Module) -> float | None:
        """The device's peak at the dtype the step computes in (autocast's, else the weights')."""
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))
        dtype = autocast or next(policy.parameters()).dtype
        return peak_flops(self.accelerator.device, dtype, self.cfg.run.peak_tflops)

    def announce(self, index: int, pieces: Any) -> None:
        """One line on what the stage trains (parameters, trainable share, data, steps), and a warning when
        its warm-up is longer than the stage: the LR would never reach its peak."""
        stage, params = pieces.stage, [p for m in (pieces.model, *pieces.heads.values()) for p in m.parameters()]
        total, trainable = sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
        records = self.records[index]
        line = (
            f"stage {stage.name}: {total / 1e6:.2f}M parameters, {trainable / max(total, 1):.1%} trainable; "
            f"{len(records.train)} train / {len(records.eval)} eval records; {pieces.total_steps} steps"
        )
        self.console.print(line, highlight=False)
        self.event("stage_info", line, stage=stage.name, parameters=total, trainable=trainable)
        guard = pieces.guard
        activations = guard.activations if guard is not None and guard.activations.config.enabled else None
        if activations is not None and not activations.watched(pieces.model) and not is_bdh(pieces.model):
            message = (
                f"guard.activations.modules {activations.config.modules} match no module of this model: "
                "activation checks are off (name its MLP activation there)"
            )
            self.console.print(f"[yellow]warning:[/] {escape(message)}")
            self.event("config", message, "warning", stage.name)
        if stage.schedule.warmup_steps >= pieces.total_steps:
            message = (
                f"stages.{index}.schedule.warmup_steps={stage.schedule.warmup_steps} is not shorter than the "
                f"stage ({pieces.total_steps} steps): the LR never reaches optimizer.lr"
            )
            self.console.print(f"[yellow]warning:[/] {escape(message)}")
            self.event("config", message, "warning", stage.name)

    def record_companions(self, stage: StageSection, companions: dict[str, Any]) -> None:
        """The stage's frozen companions in the manifest, by path and content hash."""
        if not companions:
            return
        recorded = self.run.manifest().get("companions", {})
        recorded[stage.name] = {name: c.record() for name, c in companions.items()}
        self.run.update_manifest(companions=recorded)

    def accuracy_path(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, eval/<when>.json) before training, after each earlier policy stage and after the last."""
        whens = [("before", "before"), *((s.name, f"after-{s.name}") for s in self.cfg.stages), ("after", "after")]
        files = [(label, self.run.eval_dir / f"{when}.json") for label, when in whens]
        return [(label, json.loads(f.read_text())) for label, f in files if f.is_file()]

    def measure_accuracy(self, when: str, model: torch.nn.Module, force: bool = False) -> dict[str, Any] | None:
        """Held-out accuracy, written to eval/<when>.json; `before` is measured once, even across resumes."""
        ev = self.cfg.eval
        if ev.task is None:
            return None
        path = self.run.eval_dir / f"{when}.json"
        if path.is_file() and not force:
            return json.loads(path.read_text())
        params = ev.params or self._task_params(ev.task)
        task = build_task(ev.task, params)
        instances = heldout_instances(task, ev.n, self.train_prompts)
        chat = self.cfg.data.chat
        measured = task_accuracy(model, self.tokenizer, task, instances, ev.max_new_tokens, ev.batch_size, chat=chat)
        acc = measured.to_dict()
        self.run.eval_dir.mkdir(exist_ok=True)
        atomic_write_json(path, acc)
        self.event(
            "accuracy",
            f"{when}: {task.name} accuracy {acc['accuracy']:.1%} on {acc['n']} held-out",
            accuracy=acc["accuracy"],
            when=when,
        )
        moment = f"after stage {when.removeprefix('after-')}" if when.startswith("after-") else f"{when} training"
        self.console.print(
            f"held-out {task.name} accuracy {moment}: {acc['accuracy']:.1%} ({acc['correct']}/{acc['n']})"
        )
        return acc

    def generation_checks(self, guard: Guard | None, guard_cfg: GuardSection) -> GenerationChecks | None:
        """Sample checks on held-out prompts of the eval task (or eval records), scored by the task."""
        cfg = guard_cfg.generation
        if guard is None or cfg.every == 0:
            return None
        task, score = None, None
        if self.cfg.eval.task is not None:
            task = build_task(self.cfg.eval.task, self.cfg.eval.params or self._task_params(self.cfg.eval.task))
            instances = heldout_instances(task, cfg.n_prompts, self.train_prompts)
            prompts = [i.prompt for i in instances]
            score = lambda i, text: task.score(instances[i], text).value  # noqa: E731
        else:
            prompts = self.eval_prompts[: cfg.n_prompts]

        def sample(model: torch.nn.Module, texts: list[str], greedy: bool) -> list[str]:
            temperature = None if greedy else cfg.temperature
            return generate_text(model, self.tokenizer, texts, cfg.max_new_tokens, temperature, self.cfg.data.chat)

        return GenerationChecks(cfg, prompts, sample, score)

    def _task_params(self, task: str) -> dict[str, Any]:
        """The params the training data used for this task, so held-out instances match the training distribution."""
        for src in self.cfg.data.sources:
            if getattr(src, "task", None) == task:
                return src.params  # type: ignore[union-attr]
        return {}
