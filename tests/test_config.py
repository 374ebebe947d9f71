"""The run file: defaults filled in, and every bad field named with its allowed values."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.config import RunConfig, load_config
from trainguard.errors import ConfigError

runner = CliRunner()


def check(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["config", "check", str(path)])
    return result.exit_code, result.output


def test_defaults_are_the_documented_seed_defaults(make_config):
    cfg = load_config(make_config())
    stage = cfg.stages[0]
    assert cfg.stages[0].objective.loss_on == "completion"
    assert cfg.data.eval_fraction == 0.1
    defaults = RunConfig.model_fields["stages"].annotation.__args__[0]  # StageSection
    d = defaults.model_validate({"name": "x", "objective": "sft", "max_steps": 1})
    assert (d.optimizer.lr, d.schedule.warmup_steps, d.optimizer.weight_decay) == (2e-5, 100, 0.01)
    assert (d.max_grad_norm, d.schedule.min_lr_ratio) == (1.0, 0.1)
    assert stage.optimizer.lr == 3e-3


def test_lora_defaults_follow_the_seed(make_config):
    cfg = load_config(make_config(model={"preset": "tiny", "lora": {}}))
    lora = cfg.model.lora
    assert (lora.r, lora.alpha, lora.dropout) == (64, 128, 0.05)
    assert lora.target_modules is None  # every linear layer but the head: on Llama, the seed's list exactly
    from trainguard.models.loading import build_model, load_tokenizer

    model = build_model(cfg.model, load_tokenizer(cfg.model, cfg.tokenizer), 32, seed=0)
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_check_prints_the_resolved_config(make_config):
    code, out = check(make_config())
    assert code == 0
    assert "min_lr_ratio: 0.1" in out and "loss_on: completion" in out


def test_unknown_key_names_the_allowed_keys(make_config):
    code, out = check(make_config(run={"name": "t", "sede": 3}))
    assert code == 2
    assert "run: unknown key 'sede'; allowed: name, seed, out_dir" in out
    assert "Traceback" not in out


def test_bad_values_name_the_field_and_allowed_values(make_config, tmp_path):
    stage = {"name": "s", "objective": "dpo", "max_steps": "many", "schedule": {"name": "linear"}}
    code, out = check(make_config(stages=[stage]))
    assert code == 2
    assert "stages.0.objective: unknown objective 'dpo'; allowed: cost, grpo, ppo, reward, sft" in out
    assert "stages.0.max_steps: Input should be a valid integer" in out
    assert "stages.0.schedule.name: Input should be 'cosine' or 'constant'" in out


def test_unknown_task_lists_registered_tasks(make_config):
    code, out = check(make_config(data={"sources": [{"task": "sat9", "n": 3}]}))
    allowed = (
        "abd, bash_command, chain_of_thought, ded, function_call, grammar, plan, reverse, safety, sat, sort, "
        "structured, text_completion, tool_use"
    )
    assert code == 2 and f"unknown task 'sat9'; allowed: {allowed}" in out


def test_missing_model_path_is_named(make_config, tmp_path):
    code, out = check(make_config(model={"preset": None, "path": str(tmp_path / "nope")}))
    assert code == 2 and "model.path: " in out and "no config.json" in out


def test_model_needs_a_preset_or_a_path(make_config):
    code, out = check(make_config(model={"preset": None}))
    assert code == 2 and "exactly one of 'preset'" in out


def test_malformed_yaml_gives_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  name: x\n  seed: [1, 2\nmodel: {}\n")
    code, out = check(bad)
    assert code == 2 and "malformed YAML at line" in out


def test_set_overrides_a_nested_key(make_config):
    cfg = load_config(make_config(), ["stages.0.optimizer.lr=0.5", "run.seed=7"])
    assert cfg.stages[0].optimizer.lr == 0.5 and cfg.run.seed == 7
    with pytest.raises(ConfigError, match="no such place"):
        load_config(make_config(), ["stages.5.max_steps=3"])


def test_schema_lists_sections_with_descriptions():
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    import json

    schema = json.loads(result.output)
    assert set(schema["properties"]) == {
        "run",
        "model",
        "tokenizer",
        "data",
        "stages",
        "eval",
        "tracking",
        "guard",
        "deployment",
        "faults",
        "imports",
        "sandbox",
    }
    lr = schema["$defs"]["OptimizerSection"]["properties"]["lr"]
    assert lr["default"] == 2e-5 and "seed default" in lr["description"]


def test_set_accepts_the_readmes_bracket_keys(make_config):
    cfg = load_config(make_config(), ["stages[0].max_steps=7", "stages.0.batch_size=3"])
    assert cfg.stages[0].max_steps == 7 and cfg.stages[0].batch_size == 3


def test_relative_data_paths_are_read_from_the_config_files_folder(tmp_path, monkeypatch):
    import json

    from helpers import tiny_config, write_config

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "rows.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    path = write_config(folder / "run.yaml", tiny_config(tmp_path / "runs", data={"sources": [{"path": "rows.jsonl"}]}))
    monkeypatch.chdir(tmp_path)  # somewhere else
    cfg = load_config(path)
    assert cfg.data.sources[0].path == (folder / "rows.jsonl").resolve()
    with pytest.raises(ConfigError, match=r"data\.sources\.0.*'nope\.jsonl' not found"):
        load_config(path, ["data.sources.0.path=nope.jsonl"])


def test_yaml_on_and_off_are_progress_settings(tmp_path):
    from helpers import tiny_config, write_config

    cfg = tiny_config(tmp_path / "runs")
    path = write_config(tmp_path / "run.yaml", cfg)
    text = path.read_text().replace("progress: 'off'", "progress: on").replace("progress: off", "progress: on")
    path.write_text(text)
    assert "progress: on" in text and load_config(path).tracking.progress == "on"
    assert load_config(path, ["tracking.progress=off"]).tracking.progress == "off"


def test_nested_plug_in_configs_survive_the_saved_config_yaml(tmp_path):
    """A resume rebuilds every piece from config.yaml: a reward function's or a constraint measure's own keys
    must come back (a list typed by the base class once dropped `cap`, and resumed runs scored differently)."""
    from trainguard.api import load_config

    source = {"name": "rollouts", "task": "reverse", "rewards": [{"name": "length", "cap": 6}]}
    measure = {"name": "format", "kind": "regex", "pattern": "[a-z]+"}
    stage = {
        "name": "g",
        "objective": "grpo",
        "source": source,
        "max_steps": 2,
        "plugins": [{"name": "constraints", "constraints": [{"name": "f", "target": 0.1, "measure": measure}]}],
    }
    cfg = load_config(
        {
            "run": {"name": "x", "out_dir": str(tmp_path)},
            "model": {"preset": "tiny"},
            "data": {"sources": [{"task": "reverse", "n": 10}]},
            "stages": [stage],
        }
    )
    saved = tmp_path / "config.yaml"
    saved.write_text(cfg.to_yaml())
    again = load_config(saved)
    assert again == cfg
    assert again.stages[0].source.rewards[0].cap == 6
    assert again.stages[0].plugins[0].constraints[0].measure.pattern == "[a-z]+"


def test_a_stage_may_not_take_a_name_that_init_reserves(make_config, tmp_path):
    """A stage called `base` would make `init: previous` of the next one load the untrained model."""
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["name"] = "base"
    code, out = check(write_config(tmp_path / "reserved.yaml", cfg))
    assert code == 2 and "stages.0.name: 'base' is reserved" in out
