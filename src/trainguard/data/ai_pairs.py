"""Preference pairs that a model and the constitution make, for `data collect --pairs --source`:
`constitution` samples two answers per task prompt and lets the model compare them against the principles
(the framework's rules decide where its scores differ, and break ties); `critique` has the model answer,
critique its answer against the principles and revise it, and prefers the revision. What could not be
decided (an answer naming neither response, equal scores, identical samples, a revision that changed
nothing) is counted in the report, never guessed."""

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from trainguard.constitution import (
    critique_revision_pipeline,
    generate_preference_pairs,
    revision_pairs,
    setup_default_framework,
)
from trainguard.data.collect import MAX_DRAWS_PER_ROW, CollectReport, existing_rows, plan
from trainguard.errors import DataError
from trainguard.tasks import Task

AiSource = Literal["constitution", "critique"]
BATCH = 8  # prompts per generation call


def load_generator(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(model_dir) / "config.json").is_file():
        raise DataError(f"--model {model_dir} is not a model folder (no config.json); give a run's final/")
    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def ai_records(source: AiSource, prompts: list[str], model: Any, tok: Any, report: CollectReport) -> list[dict]:
    """The pairs for these prompts, with what was undecidable counted in `report.bad`."""
    framework = setup_default_framework(model, tok, model.device)
    if source == "constitution":
        made = generate_preference_pairs(prompts, model, tok, framework, model.device)
        for key, why in (
            ("unparsed_model_answers", "model comparison named neither response"),
            ("ties_skipped", "tie: equal scores and no model choice"),
            ("identical_skipped", "two identical samples"),
        ):
            if made.stats[key]:
                report.bad[why] += made.stats[key]
        records = list(made)
    else:
        results = critique_revision_pipeline(prompts, model, tok, framework, model.device)
        records = revision_pairs(results)
        if len(records) < len(results):
            report.bad["revision changed nothing"] += len(results) - len(records)
    fallbacks = framework.get_statistics().get("model_fallbacks", 0)
    if fallbacks:
        report.bad["model verdict unparsed: the rules judged instead"] += fallbacks
    return records


def collect_ai_pairs(
    tasks: list[Task],
    n: int,
    out: Path,
    model_dir: Path,
    source: AiSource,
    seed: int = 0,
    on_row: Callable[[], None] = lambda: None,
) -> CollectReport:
    """Fill `out` with up to `n` pairs for the tasks' prompts (resumable like `collect`)."""
    model, tok = load_generator(model_dir)
    report = CollectReport(str(out), target=n)
    seen_ids, seen_prompts = existing_rows(out, report, pairs=True)
    todo = ((t, i) for t, i in plan(tasks, seed) if f"{t.name}-{i}" not in seen_ids)
    todo = itertools.islice(todo, max(0, n - report.resumed) * MAX_DRAWS_PER_ROW)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f:
        while report.resumed + report.written < n and (chunk := list(itertools.islice(todo, BATCH))):
            ids = {t.instance(i).prompt: (t.name, i) for t, i in chunk}
            fresh = [p for p in ids if p not in seen_prompts]
            report.duplicates += len(ids) - len(fresh)
            for record in ai_records(source, fresh, model, tok, report) if fresh else []:
                if report.resumed + report.written >= n or record["prompt"] in seen_prompts:
                    continue
                task, i = ids[record["prompt"]]
                seen_prompts.add(record["prompt"])
                row = {"id": f"{task}-{i}", "task": task, "source": source, **record}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                report.written += 1
                on_row()
        f.flush()
        os.fsync(f.fileno())
    return report
