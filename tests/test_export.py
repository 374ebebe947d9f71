"""What trainguard exports works without trainguard: plain transformers loads `final/` and generates the
same answers trainguard's own evaluation scores."""

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.eval.accuracy import heldout_instances
from trainguard.tasks import build_task


def test_final_generates_through_plain_transformers_as_well_as_trainguard_measures(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    cfg["tokenizer"] = {"max_length": 32}
    cfg["data"] = {"sources": [{"task": "reverse", "n": 4000, "params": {"min_len": 3, "max_len": 5}}]}
    # 500 steps: at 300, held-out accuracy still depends on when a seed's loss drops (0.07-0.61 over seeds 0-2)
    cfg["stages"][0] |= {"max_steps": 500, "batch_size": 32, "eval_every": 500, "save_every": 500}
    cfg["stages"][0]["schedule"] = {"warmup_steps": 20}
    cfg["eval"] = {"task": "reverse", "n": 100, "max_new_tokens": 8}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    final = tmp_path / "runs" / "t" / "final"
    ours = json.loads((tmp_path / "runs" / "t" / "eval" / "after.json").read_text())
    assert ours["accuracy"] >= 0.3, ours["accuracy"]  # trained enough for the comparison to mean something

    tokenizer = AutoTokenizer.from_pretrained(final)  # transformers alone from here
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    task = build_task("reverse", {"min_len": 3, "max_len": 5})
    trained = {task.record(i)["prompt"] for i in range(4000)}
    correct = 0
    for example in heldout_instances(task, 100, trained):  # the words trainguard's evaluation used
        inputs = tokenizer(example.prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        assert tokenizer.eos_token_id in new.tolist() or len(new) == 8
        correct += task.score(example, tokenizer.decode(new, skip_special_tokens=True)).value
    assert abs(correct / 100 - ours["accuracy"]) <= 0.05, (correct, ours["accuracy"])
    assert tokenizer("abc")["input_ids"][0] == tokenizer.bos_token_id  # the tokenizer adds what training added
    gen = json.loads((final / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tokenizer.eos_token_id and gen["pad_token_id"] == tokenizer.pad_token_id
