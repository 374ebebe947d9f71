"""LoRA on a model whose linear layers are not Llama's: GPT-2 (Conv1D c_attn, c_proj, c_fc) trains with
the default settings; a list that matches nothing exits 2 and names the model's linear layers."""

from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from helpers import gpt2_folder, tiny_config, write_config
from trainguard.cli import app


def test_lora_with_default_targets_trains_a_gpt2_folder(tmp_path):
    model = {"preset": None, "path": str(gpt2_folder(tmp_path / "gpt2")), "lora": {"r": 4, "dropout": 0.0}}
    cfg = tiny_config(tmp_path / "runs", model=model)
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    saved = load_file(run / "checkpoints" / "step-000012" / "model.safetensors")
    adapted = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in saved}
    assert adapted == {"c_attn", "c_proj", "c_fc"}, adapted
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # the adapters trained
    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    assert type(merged).__name__ == "GPT2LMHeadModel"


def test_lora_targets_that_match_nothing_name_the_models_linear_layers(tmp_path):
    model = {"preset": None, "path": str(gpt2_folder(tmp_path / "gpt2")), "lora": {"target_modules": ["q_proj"]}}
    cfg = tiny_config(tmp_path / "runs", model=model)
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 2
    assert "match no module of this model" in result.output and "c_attn, c_fc, c_proj" in result.output


def test_lora_on_gpt2_says_nothing_to_the_user(tmp_path):
    import warnings

    from trainguard.config import LoraSection
    from trainguard.models.loading import add_lora

    model = AutoModelForCausalLM.from_pretrained(gpt2_folder(tmp_path / "gpt2"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(model, LoraSection(r=4))
    assert [str(w.message) for w in caught] == []  # no fan_in_fan_out or gradient-checkpointing notices
