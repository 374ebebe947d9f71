"""Reviews of trained models outside the step loop: forgetting after each stage, the deployment gate and the
final evaluation table after the last.

Forgetting: after each stage, every earlier stage's tasks are re-scored on held-out prompts and compared with
their score when that stage ended (eval/forgetting.json keeps those scores, so a resumed run compares with the
same numbers). The deployment gate writes final/verdict.json; a rejection raises `DeploymentRejected` (exit 4)
once the run is otherwise complete.
"""

import json
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from trainguard.atomic import atomic_write_json
from trainguard.config import RunConfig
from trainguard.errors import TrainguardError
from trainguard.eval.checks import Check
from trainguard.guard.alerts import Alert
from trainguard.guard.gates import SafetyMonitor, Verdict, judge


class DeploymentRejected(TrainguardError):
    """The deployment gate rejected the final model (final/verdict.json says why); the CLI exits with status 4."""

    exit_code = 4


class RunReview:
    """What the pipeline asks after stages; `task_params(task)` gives the params a task was trained with."""

    def __init__(
        self,
        cfg: RunConfig,
        tokenizer: Any,
        eval_dir: Path,
        train_prompts: set[str],
        task_params: Callable[[str], dict[str, Any]],
        stage_tasks: Callable[[int], set[str]],
    ) -> None:
        self.cfg, self.tokenizer, self.eval_dir, self.train_prompts = cfg, tokenizer, eval_dir, train_prompts
        self.task_params, self.stage_tasks = task_params, stage_tasks
        self.last: tuple[weakref.ref, tuple[str, ...], dict[str, Any]] | None = None  # (model, tasks, result)

    def evaluate(self, model: nn.Module, tasks: list[str]) -> dict[str, Any]:
        """`trainguard eval`'s numbers for `tasks` on the run's held-out prompts. Reviews come after a stage has
        trained its model (each stage builds its own), so the same model asked the same tasks again (the final
        table after the last skills point) gets the numbers it already has."""
        from trainguard.eval.runner import evaluate

        if self.last is not None and self.last[0]() is model and self.last[1] == tuple(tasks):
            return self.last[2]
        ev = self.cfg.eval
        specs = [(t, self.task_params(t)) for t in tasks]
        result = evaluate(
            model,
            self.tokenizer,
            specs,
            ev.n,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            chat=self.cfg.data.chat,
            exclude_prompts=self.train_prompts,
        )
        self.last = (weakref.ref(model), tuple(tasks), result)  # weak: an earlier stage's model is not kept alive
        return result

    # -- forgetting ---------------------------------------------------------------------------------------
    def forgetting(self, index: int, model: nn.Module, step: int) -> list[Alert]:
        """Score stage `index`'s tasks and every earlier stage's; alerts where a score fell by more than
        `eval.forgetting` since the stage that trained it ended."""
        threshold = self.cfg.eval.forgetting
        if threshold is None:
            return []
        path = self.eval_dir / "forgetting.json"
        record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"baseline": {}, "after": {}}
        stage = self.cfg.stages[index].name
        if stage in record["after"]:
            return []  # reviewed before a resume
        owners = {t: self.cfg.stages[j].name for j in range(index + 1) for t in sorted(self.stage_tasks(j))}
        tasks = sorted(owners)
        scores = {t: s["mean"] for t, s in self.evaluate(model, tasks)["tasks"].items()} if tasks else {}
        alerts = []
        for task, score in scores.items():
            base = record["baseline"].setdefault(task, {"stage": owners[task], "score": score})
            if owners[task] == stage:
                base.update(stage=stage, score=score)  # this stage trained it (again): its new level is the baseline
                continue
            drop = base["score"] - score
            if drop > threshold:
                why = (
                    f"{task} fell from {base['score']:.3f} (after stage {base['stage']}) to {score:.3f} after "
                    f"stage {stage}: catastrophic forgetting; mix earlier tasks into this stage or lower its LR"
                )
                data = {"task": task, "before": base["score"], "after": score, "stage": stage}
                alerts.append(Alert("forgetting", "warning", step, drop, threshold, why, data))
        record["after"][stage] = scores
        self.eval_dir.mkdir(exist_ok=True)
        atomic_write_json(path, record)
        return alerts

    # -- skills by stage ----------------------------------------------------------------------------------
    def skills(self, when: str, model: nn.Module) -> None:
        """With eval.skills: eval.tasks' mean score and own metrics at `when` ("before", or a stage's name), kept
        in eval/skills.json's points, in the order measured; a point already there (a resumed run) is not measured
        again."""
        if not (self.cfg.eval.skills and self.cfg.eval.tasks):
            return
        path = self.eval_dir / "skills.json"
        points: list[dict[str, Any]] = json.loads(path.read_text())["points"] if path.is_file() else []
        if any(point["when"] == when for point in points):
            return
        rows = self.evaluate(model, self.cfg.eval.tasks)["tasks"]
        scores = {task: {"mean": row["mean"], **row.get("metrics", {})} for task, row in rows.items()}
        self.eval_dir.mkdir(exist_ok=True)
        atomic_write_json(path, {"points": [*points, {"when": when, "tasks": scores}]})

    # -- deployment ---------------------------------------------------------------------------------------
    def deployment(self, model: nn.Module, final_dir: Path, step: int, open_alerts: list[str]) -> Verdict | None:
        """The deployment gate's verdict on the final model, written to final/verdict.json."""
        gate = self.cfg.deployment
        if gate is None:
            return None
        exclude = frozenset(self.train_prompts)
        results = {c.name: Check(c, exclude).run(model, self.tokenizer, self.cfg.data.chat) for c in gate.checks}
        summaries = {name: r.summary for name, r in results.items()}
        risk = gate.risk
        monitor = SafetyMonitor(risk.risk_threshold, risk.tolerance) if risk is not None else None
        risks = results[risk.check].values if risk is not None else None
        verdict = judge("deployment", gate, summaries, step, risks, monitor, open_alerts)
        out = verdict.to_dict() | {"history": monitor.get_history() if monitor is not None else []}
        atomic_write_json(final_dir / "verdict.json", out)
        return verdict

    def scorecard(self, model: nn.Module) -> dict[str, Any] | None:
        """BuilderBrain's scorecard of the final model and validate_for_deployment's verdict: eval/scorecard.json."""
        from trainguard.eval.scorecard import evaluate_builderbrain, validate_for_deployment

        cfg = self.cfg.eval.scorecard
        if cfg is None:
            return None
        card = evaluate_builderbrain(
            model,
            self.tokenizer,
            cfg.n,
            max_new_tokens=cfg.max_new_tokens,
            n_safety=cfg.n_safety,
            batch_size=self.cfg.eval.batch_size,
            chat=self.cfg.data.chat,
            exclude_prompts=frozenset(self.train_prompts),
        )
        result = {"scorecard": card.to_dict(), "verdict": validate_for_deployment(card, cfg.goals).to_dict()}
        self.eval_dir.mkdir(exist_ok=True)
        atomic_write_json(self.eval_dir / "scorecard.json", result)
        return result

    def final_table(self, model: nn.Module) -> dict[str, Any] | None:
        """eval.tasks on the final model, written to eval/final.json as `trainguard eval` writes its JSON."""
        tasks = self.cfg.eval.tasks
        if not tasks:
            return None
        result = {"model": "final", **self.evaluate(model, tasks)}
        self.eval_dir.mkdir(exist_ok=True)
        atomic_write_json(self.eval_dir / "final.json", result)
        return result
