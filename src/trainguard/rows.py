"""Reading rows of a JSONL or Parquet file: bad rows are counted and reported, never crashed on. Below
both the tasks (which read instance files) and the data records (which read training files)."""

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainguard.errors import DataError


@dataclass
class ReadReport:
    source: str
    rows: int = 0
    usable: int = 0
    bad: Counter = field(default_factory=Counter)  # reason -> count
    first_bad_line: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, line: int) -> None:
        self.bad[reason] += 1
        self.first_bad_line.setdefault(reason, line)

    def summary(self) -> str:
        if not self.bad:
            return f"{self.source}: {self.usable} rows"
        reasons = ", ".join(
            f"{n} {reason} (first at line {self.first_bad_line[reason]})" for reason, n in self.bad.most_common()
        )
        return f"{self.source}: {self.usable} of {self.rows} rows usable; skipped {reasons}"


def parquet_rows(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'trainguard[parquet]')") from exc
    return pq.read_table(path).to_pylist()


def read_rows(
    path: Path, check: Callable[[Any], str | None], report_type: type[ReadReport] = ReadReport
) -> tuple[list[dict[str, Any]], Any]:
    """Rows of a JSONL or Parquet file that pass `check`, and a report (a `report_type`) of the rest; DataError if
    none do."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    report = report_type(str(path))
    rows: list[dict[str, Any]] = []
    if path.suffix == ".parquet":
        numbered: list[tuple[int, Any]] = list(enumerate(parquet_rows(path), 1))
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            numbered = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    for line_no, raw in numbered:
        report.rows += 1
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                report.reject("malformed JSON", line_no)
                continue
        reason = check(raw)
        if reason:
            report.reject(reason, line_no)
            continue
        rows.append(raw)
    report.usable = len(rows)
    if not rows:
        detail = report.summary() if report.rows else f"{path}: the file has no rows"
        raise DataError(f"no usable records: {detail}")
    return rows, report
