"""Data checks: contamination strings, repeated n-grams, duplicates and imbalance; run over each source
before training and over each batch during it."""

import hashlib
import re
from collections import Counter
from typing import Any

import torch
from pydantic import Field

from trainguard.data.records import answer_text
from trainguard.guard.alerts import Alert
from trainguard.section import Section

DEFAULT_PATTERNS = [r"\[INST\].*?\[/INST\]", r"As an AI assistant", r"I cannot and will not"]


class DataChecksConfig(Section):
    enabled: bool = Field(True, description="Check each source before training and each batch during it.")
    patterns: list[str] = Field(DEFAULT_PATTERNS, description="Contamination regexes (defaults from the seed).")
    extra_patterns: list[str] = Field(default_factory=list, description="User patterns added to the defaults.")
    max_imbalance: float = Field(100.0, gt=1, description="Task or class count ratio above this is imbalanced.")
    ngram_repeats: int = Field(32, ge=2, description="An n-gram repeated this many times in a row is degenerate.")
    max_period: int = Field(13, ge=1, description="Longest n-gram period checked for repeats.")
    duplicate_warn: float = Field(0.5, gt=0, le=1, description="Share of exact duplicates that warns (else info).")


def longest_repeat(ids: torch.Tensor, max_period: int) -> torch.Tensor:
    """(B,) the most consecutive repeats of any n-gram of period 1..max_period in each row of `ids` (B, T)."""
    best = torch.ones(ids.shape[0], dtype=torch.long)
    for p in range(1, min(max_period, ids.shape[1] - 1) + 1):
        same = ids[:, p:] == ids[:, :-p]  # (B, T-p): token equals the one p before
        count = torch.cumsum(same.long(), dim=1)
        reset = torch.cummax(torch.where(same, 0, count), dim=1).values
        run = (count - reset).max(dim=1).values  # longest stretch of equal-to-p-back
        best = torch.maximum(best, run // p + 1)
    return best


def text_repeat(text: str, max_period: int) -> int:
    ids = torch.tensor([list(text.encode("utf-8"))]) if text else torch.zeros((1, 1), dtype=torch.long)
    return int(longest_repeat(ids, max_period)[0]) if ids.shape[1] > 1 else 1


class DataChecks:
    def __init__(self, config: DataChecksConfig) -> None:
        self.config = config
        self.pattern = re.compile("|".join(f"(?:{p})" for p in [*config.patterns, *config.extra_patterns]), re.S)

    def contaminated(self, text: str) -> str | None:
        m = self.pattern.search(text)
        return m.group(0)[:60] if m else None

    # -- before training ---------------------------------------------------------------------------------
    def check_records(self, source: str, records: list[dict[str, Any]]) -> list[Alert]:
        c, alerts = self.config, []
        texts = [r["prompt"] + answer_text(r) for r in records]
        hits = [(i, m) for i, t in enumerate(texts) if (m := self.contaminated(t))]
        if hits:
            alerts.append(
                Alert(
                    "contamination",
                    "warning",
                    0,
                    len(hits),
                    0,
                    f"remove them from {source}",
                    {"source": source, "rows": [i for i, _ in hits[:10]], "matches": [m for _, m in hits[:5]]},
                )
            )
        reps = [i for i, t in enumerate(texts) if text_repeat(t, c.max_period) >= c.ngram_repeats]
        if reps:
            alerts.append(
                Alert(
                    "repetition",
                    "warning",
                    0,
                    len(reps),
                    c.ngram_repeats,
                    f"drop degenerate rows of {source}",
                    {"source": source, "rows": reps[:10]},
                )
            )
        digests = Counter(hashlib.sha1(t.encode()).hexdigest() for t in texts)
        dupes = sum(n - 1 for n in digests.values())
        if dupes:
            share = dupes / len(texts)
            severity = "warning" if share >= c.duplicate_warn else "info"
            alerts.append(
                Alert(
                    "duplicates",
                    severity,
                    0,
                    share,
                    c.duplicate_warn,
                    f"deduplicate {source}",
                    {"source": source, "duplicates": dupes},
                )
            )
        alerts += self.imbalance(source, records)
        return alerts

    def imbalance(self, source: str, records: list[dict[str, Any]]) -> list[Alert]:
        """Task counts when records name several tasks, else completion classes when there are few."""
        tasks = Counter(r.get("task", "") for r in records)
        counts = tasks if len(tasks) > 1 else Counter(answer_text(r) for r in records)
        if len(counts) < 2 or (counts is not tasks and len(counts) > 20):
            return []
        ratio = max(counts.values()) / min(counts.values())
        if ratio <= self.config.max_imbalance:
            return []
        what = "tasks" if counts is tasks else "classes"
        return [
            Alert(
                "imbalance",
                "warning",
                0,
                ratio,
                self.config.max_imbalance,
                f"reweight the {what} of {source}",
                {"source": source, "counts": dict(counts.most_common(5))},
            )
        ]

    # -- during training ---------------------------------------------------------------------------------
    def check_batch(
        self, input_ids: torch.Tensor, token_mask: torch.Tensor, texts: list[str], step: int
    ) -> list[Alert]:
        c, alerts = self.config, []
        hits = [m for t in texts if (m := self.contaminated(t))]
        if hits:
            alerts.append(
                Alert("contamination", "warning", step, len(hits), 0, "skip the batch", {"matches": hits[:3]})
            )
        if input_ids.shape[1] >= c.ngram_repeats:  # shorter rows cannot hold that many repeats
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            ids = torch.where(token_mask, input_ids, -1 - positions)  # padding never repeats
            reps = longest_repeat(ids, c.max_period)
            worst = int(reps.max())
            if worst >= c.ngram_repeats:
                alerts.append(
                    Alert(
                        "repetition",
                        "warning",
                        step,
                        worst,
                        c.ngram_repeats,
                        "skip the batch",
                        {"rows": int((reps >= c.ngram_repeats).sum())},
                    )
                )
        return alerts
