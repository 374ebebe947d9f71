"""A completion is never cut: long prompts lose tokens from their left; a completion that cannot fit is a
counted bad row, never a row that trains on nothing."""

import json

from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.data.batches import special_prefix, tokenize_record
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.track.store import read_metrics, read_table


def test_a_long_prompt_loses_its_left_end_and_keeps_bos_and_the_whole_completion():
    tok = byte_tokenizer()
    prefix = special_prefix(tok)
    assert prefix == [tok.bos_token_id]
    ex, cut = tokenize_record(tok, {"prompt": "x" * 50 + "QUESTION", "completion": "answer"}, 16, prefix)
    assert cut and len(ex.ids) == 16
    assert ex.ids[0] == tok.bos_token_id and tok.decode(ex.ids[1 : ex.prompt_len]) == "QUESTION"[-8:]
    assert tok.decode(ex.ids[ex.prompt_len :], skip_special_tokens=True) == "answer"
    assert ex.ids[-1] == tok.eos_token_id


def test_a_completion_that_cannot_fit_is_a_bad_row():
    tok = byte_tokenizer()
    ex, cut = tokenize_record(tok, {"prompt": "q", "completion": "a" * 20}, 16, special_prefix(tok))
    assert ex is None and cut
    ex, cut = tokenize_record(tok, {"prompt": "q", "completion": "a" * 13}, 16, special_prefix(tok))
    assert ex is not None and not cut and len(ex.ids) == 16  # bos + q + 13 + eos


def test_a_run_on_prompts_longer_than_max_length_still_trains_on_every_completion(tmp_path):
    rows = [{"prompt": f"{'context ' * 12}item {i}: reverse", "completion": f"{i:03d}"[::-1]} for i in range(60)]
    rows += [{"prompt": "short", "completion": "y" * 40}]  # cannot fit at all
    data = tmp_path / "long.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = tiny_config(tmp_path / "runs", data={"sources": [{"path": str(data)}], "eval_fraction": 0.0})
    cfg["tokenizer"] = {"max_length": 24}
    cfg["stages"][0] |= {"max_steps": 4, "eval_every": 100, "save_every": 100}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    losses = [v for _, _, k, v, _ in read_metrics(run / "metrics.db") if k == "loss/train"]
    assert len(losses) == 4 and min(losses) > 1.0  # completion tokens carry loss at every step
    messages = [e["message"] for e in read_table(run / "metrics.db", "events") if e["kind"] == "data"]
    assert any("60 prompts cut from the left" in m for m in messages), messages
    assert any("1 records skipped (bad rows)" in m for m in messages), messages
