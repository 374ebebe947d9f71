"""Data checks: contamination, repeated n-grams, duplicates and imbalance at their boundaries."""

import torch

from trainguard.guard.data_checks import DataChecks, DataChecksConfig, longest_repeat, text_repeat


def rec(prompt: str, completion: str, task: str = "t") -> dict[str, str]:
    return {"prompt": prompt, "completion": completion, "task": task}


def kinds(alerts):
    return sorted(a.kind for a in alerts)


def test_default_contamination_patterns():
    checks = DataChecks(DataChecksConfig())
    assert checks.contaminated("x [INST] do it [/INST] y") == "[INST] do it [/INST]"
    assert checks.contaminated("As an AI assistant, sure")
    assert checks.contaminated("I cannot and will not do that")
    assert checks.contaminated("an AI assistant said") is None


def test_user_patterns_extend_the_defaults():
    checks = DataChecks(DataChecksConfig(extra_patterns=[r"SECRET-\d+"]))
    assert checks.contaminated("leak SECRET-42") == "SECRET-42" and checks.contaminated("[INST]a[/INST]")


def test_repeats_at_the_32_boundary_and_period_13():
    assert text_repeat("ab" * 32, 13) == 32 and text_repeat("ab" * 31 + "a", 13) == 31
    gram = "abcdefghijklm"  # period 13
    assert text_repeat(gram * 32, 13) == 32
    assert text_repeat("abcdefghijklmn" * 32, 13) == 1  # period 14 is out of range


def test_longest_repeat_per_row():
    ids = torch.tensor([[1, 2] * 20, list(range(40))])
    assert longest_repeat(ids, 13).tolist() == [20, 1]


def test_records_report_contamination_repetition_duplicates():
    checks = DataChecks(DataChecksConfig())
    rows = [rec("p", "As an AI assistant I refuse"), rec("q", "ha" * 40), rec("r", "x"), rec("r", "x")]
    alerts = checks.check_records("file.jsonl", rows)
    assert kinds(alerts) == ["contamination", "duplicates", "repetition"]
    dup = next(a for a in alerts if a.kind == "duplicates")
    assert dup.severity == "info" and dup.value == 0.25


def test_imbalance_boundary():
    checks = DataChecks(DataChecksConfig())
    balanced = [rec(str(i), "a", "x") for i in range(100)] + [rec("z", "a", "y")]
    assert checks.imbalance("s", balanced) == []  # exactly 100:1
    skewed = [*balanced, rec("w", "a", "x")]
    (alert,) = checks.imbalance("s", skewed)
    assert alert.kind == "imbalance" and alert.value == 101


def test_batch_check_ignores_padding_and_short_rows():
    checks = DataChecks(DataChecksConfig())
    ids = torch.tensor([[5] * 10 + [0] * 30, [1, 2] * 20])
    mask = torch.tensor([[True] * 10 + [False] * 30, [True] * 40])
    alerts = checks.check_batch(ids, mask, ["ok", "fine"], step=3)
    assert alerts == []  # 30 pads are not a repeat, and [1, 2] x 20 is below 32
    ids = torch.tensor([[7, 8] * 32, list(range(64))])  # 32 repeats of a bigram, then a clean row
    mask = torch.ones_like(ids, dtype=torch.bool)
    assert kinds(checks.check_batch(ids, mask, ["[INST]x[/INST]", ""], step=3)) == ["contamination", "repetition"]
