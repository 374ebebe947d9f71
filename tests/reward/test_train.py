"""Training a reward model through the write-up's API: it learns, it keeps its best epoch, checkpoints and
exported folders come back exactly, and a folder that is not a reward model says why."""

import json

import pytest
import torch
from reward_helpers import tiny_lm

from trainguard.errors import ExportError
from trainguard.models.heads import save_heads
from trainguard.models.loading import export_model
from trainguard.reward import (
    RewardHead,
    RewardModel,
    RewardModelTrainer,
    evaluate_reward_model,
    load_reward_model,
    save_reward_model,
    train_reward_model,
)

# Learnable from the text alone: the chosen answer is polite, the rejected one is not.
DATA = [
    {"prompt": f"question {i}?", "response_chosen": "thank you, here it is", "response_rejected": f"no {i}"}
    for i in range(48)
]


def test_train_reward_model_learns_and_reports_each_epoch(base, tok):
    torch.manual_seed(0)
    rm = RewardModel(base, hidden_size=128)
    loss_before, _ = evaluate_reward_model(rm, DATA[:16], tok, "cpu")
    history = train_reward_model(
        rm, DATA, tok, num_epochs=2, batch_size=8, learning_rate=1e-3, validation_data=DATA[:16], log_interval=0
    )
    assert set(history) == {"losses", "accuracy", "epochs", "val_losses", "val_accuracy"}
    assert history["epochs"] == [1, 2] and all(len(history[k]) == 2 for k in history)
    loss_after, acc_after = evaluate_reward_model(rm, DATA[:16], tok, "cpu", batch_size=4)
    assert acc_after == 1.0 and loss_after < 0.1 < loss_before
    assert history["val_accuracy"][-1] == acc_after and abs(history["val_losses"][-1] - loss_after) < 1e-5


def test_empty_training_data_raises(base, tok):
    with pytest.raises(ValueError, match="empty"):
        train_reward_model(RewardModel(base, hidden_size=128), [], tok)


def test_accumulation_matches_one_big_batch(tok):
    histories = []
    for batch, accumulate in ((8, 1), (4, 2)):
        torch.manual_seed(1)
        rm = RewardModel(tiny_lm(tok, seed=3), hidden_size=128)
        rm.reward_head[2].p = 0.0  # no dropout: the two runs must see the same function
        kwargs = {"num_epochs": 1, "learning_rate": 1e-3, "log_interval": 0}
        train_reward_model(rm, DATA[:8], tok, batch_size=batch, gradient_accumulation_steps=accumulate, **kwargs)
        histories.append(rm.reward_head[0].weight.detach().clone())
    torch.testing.assert_close(histories[0], histories[1], atol=1e-5, rtol=1e-4)


def test_trainer_keeps_the_best_epoch_and_round_trips_checkpoints(base, tok, tmp_path):
    torch.manual_seed(0)
    trainer = RewardModelTrainer(RewardModel(base, hidden_size=128), tok, "cpu", learning_rate=1e-3, batch_size=8)
    assert (trainer.learning_rate, trainer.batch_size) == (1e-3, 8) and trainer.device == torch.device("cpu")
    history = trainer.train(DATA, num_epochs=3, validation_split=0.25, save_dir=tmp_path, patience=1)
    assert len(history["val_accuracy"]) >= 2 and trainer.best_val_accuracy == max(history["val_accuracy"])
    assert trainer.evaluate(DATA[:8])["accuracy"] == 1.0
    assert (tmp_path / "best_model.pt").is_file() and (tmp_path / "best_model_metadata.json").is_file()
    trainer.save_checkpoint(tmp_path / "ckpt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert set(state) == {"model", "history"}
    assert json.loads((tmp_path / "ckpt_metadata.json").read_text())["learning_rate"] == 1e-3
    other = RewardModelTrainer(RewardModel(tiny_lm(tok, seed=9), hidden_size=128), tok, "cpu")
    other.load_checkpoint(tmp_path / "ckpt")
    mine, theirs = trainer.reward_model.state_dict(), other.reward_model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert other.history == trainer.history and (other.learning_rate, other.batch_size) == (1e-3, 8)


def test_an_exported_reward_model_loads_exactly(base, tok, tmp_path):
    rm = RewardModel(base, hidden_size=128).eval()
    save_reward_model(rm, tok, tmp_path / "rm")
    loaded, loaded_tok = load_reward_model(tmp_path / "rm")
    prompts, responses = ["reverse: abc\n"] * 2, ["cba", "abc"]
    torch.testing.assert_close(
        loaded.get_rewards(prompts, responses, loaded_tok), rm.get_rewards(prompts, responses, tok)
    )


def test_folders_that_are_not_reward_models_say_why(base, tok, tmp_path):
    export_model(base, tok, tmp_path / "plain")
    with pytest.raises(ExportError, match=r"no reward head heads/reward/ .*heads found: none"):
        load_reward_model(tmp_path / "plain")
    save_heads({"reward": RewardHead(64)}, tmp_path / "plain")
    with pytest.raises(ExportError, match="takes hidden size 64, the model's hidden size is 128"):
        load_reward_model(tmp_path / "plain")
