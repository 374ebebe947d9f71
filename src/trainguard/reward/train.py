"""Training and evaluating a RewardModel directly (the write-up's API); the `reward` stage trains the same
model and loss through the engine, with checkpoints, the guard and resumption."""

import json
import logging
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainguard.atomic import atomic_write_text
from trainguard.reward.data import PreferenceDataset, trim_padding
from trainguard.reward.loss import compute_reward_loss
from trainguard.reward.model import RewardModel

log = logging.getLogger("trainguard.reward")
HISTORY_KEYS = ("losses", "accuracy", "val_losses", "val_accuracy")


def pair_rewards(model: RewardModel, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    batch = trim_padding(batch)
    chosen = model(batch["chosen_input_ids"].to(device), batch["chosen_attention_mask"].to(device))
    rejected = model(batch["rejected_input_ids"].to(device), batch["rejected_attention_mask"].to(device))
    return chosen, rejected


def resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def train_epoch(
    model: RewardModel,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    accumulation: int = 1,
    log_interval: int = 10,
) -> tuple[float, float]:
    """One pass: AdamW steps on the Bradley-Terry loss, gradients clipped at 1.0; (mean loss, accuracy)."""
    model.train()
    total, correct, seen = 0.0, 0, 0
    optimizer.zero_grad()
    for i, batch in enumerate(loader, 1):
        chosen, rejected = pair_rewards(model, batch, device)
        loss = compute_reward_loss(chosen, rejected)
        (loss / accumulation).backward()
        if i % accumulation == 0 or i == len(loader):
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad()
        total += float(loss.detach()) * len(chosen)
        correct += int((chosen > rejected).sum())
        seen += len(chosen)
        if log_interval and i % log_interval == 0:
            log.info("batch %d/%d  loss %.4f  accuracy %.3f", i, len(loader), total / seen, correct / seen)
    return total / seen, correct / seen


@torch.no_grad()
def evaluate_loader(model: RewardModel, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    total, correct, seen = 0.0, 0, 0
    for batch in loader:
        chosen, rejected = pair_rewards(model, batch, device)
        total += float(compute_reward_loss(chosen, rejected)) * len(chosen)
        correct += int((chosen > rejected).sum())
        seen += len(chosen)
    model.train(was_training)
    return total / seen, correct / seen


def evaluate_reward_model(
    reward_model: RewardModel,
    evaluation_data: list[dict],
    tokenizer: Any,
    device: Any = None,
    batch_size: int = 8,
    max_length: int = 512,
) -> tuple[float, float]:
    """(mean pairwise loss, fraction of pairs where the chosen response gets the higher reward)."""
    dataset = PreferenceDataset(evaluation_data, tokenizer, max_length, reward_model.separator)
    loader = DataLoader(dataset, batch_size=batch_size)
    return evaluate_loader(reward_model, loader, resolve_device(reward_model, device))


def train_reward_model(
    reward_model: RewardModel,
    training_data: list[dict],
    tokenizer: Any,
    num_epochs: int = 3,
    batch_size: int = 4,
    learning_rate: float = 1e-5,
    device: Any = None,
    validation_data: list[dict] | None = None,
    max_length: int = 512,
    gradient_accumulation_steps: int = 1,
    log_interval: int = 10,
) -> dict[str, list]:
    """Train on preference rows; one entry per epoch in each list of the returned history."""
    device = resolve_device(reward_model, device)
    reward_model.to(device)
    dataset = PreferenceDataset(training_data, tokenizer, max_length, reward_model.separator)
    if dataset.report.skipped or dataset.report.truncated:
        log.warning("%s", dataset.report.summary())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    val_loader = None
    if validation_data:
        validation = PreferenceDataset(validation_data, tokenizer, max_length, reward_model.separator)
        val_loader = DataLoader(validation, batch_size=batch_size)
    optimizer = torch.optim.AdamW([p for p in reward_model.parameters() if p.requires_grad], lr=learning_rate)
    history: dict[str, list] = {key: [] for key in (*HISTORY_KEYS, "epochs")}
    for epoch in range(1, num_epochs + 1):
        loss, accuracy = train_epoch(reward_model, loader, optimizer, device, gradient_accumulation_steps, log_interval)
        history["losses"].append(loss)
        history["accuracy"].append(accuracy)
        history["epochs"].append(epoch)
        if val_loader is not None:
            val_loss, val_accuracy = evaluate_loader(reward_model, val_loader, device)
            history["val_losses"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        log.info("epoch %d/%d  loss %.4f  accuracy %.3f", epoch, num_epochs, loss, accuracy)
    return history


class RewardModelTrainer:
    """Trains with a held-out split, keeps the best epoch by validation accuracy, stops early on request,
    and saves weights and history (`{path}.pt`, tensors and numbers only) beside `{path}_metadata.json`."""

    def __init__(
        self,
        reward_model: RewardModel,
        tokenizer: Any,
        device: Any = None,
        learning_rate: float = 1e-5,
        batch_size: int = 4,
        max_length: int = 512,
        seed: int = 0,
    ) -> None:
        self.reward_model, self.tokenizer = reward_model, tokenizer
        self.device = resolve_device(reward_model, device)
        self.learning_rate, self.batch_size, self.max_length, self.seed = learning_rate, batch_size, max_length, seed
        self.history: dict[str, list] = {key: [] for key in (*HISTORY_KEYS, "epochs")}
        self.best_val_accuracy = -1.0  # below any accuracy: the first epoch is always the best so far

    def train(
        self,
        training_data: list[dict],
        num_epochs: int = 3,
        validation_split: float = 0.1,
        save_dir: str | Path | None = None,
        save_best_only: bool = True,
        patience: int | None = None,
    ) -> dict[str, list]:
        """Shuffled split (seeded); after training the model holds the best epoch's weights."""
        rows = list(training_data)
        random.Random(self.seed).shuffle(rows)
        n_val = int(len(rows) * validation_split) if validation_split > 0 else 0
        val_rows, train_rows = rows[:n_val], rows[n_val:]
        separator = self.reward_model.separator
        dataset = PreferenceDataset(train_rows, self.tokenizer, self.max_length, separator)
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=True, generator=generator)
        val_loader = (
            DataLoader(PreferenceDataset(val_rows, self.tokenizer, self.max_length, separator), self.batch_size)
            if val_rows
            else None
        )
        optimizer = torch.optim.AdamW(
            [p for p in self.reward_model.parameters() if p.requires_grad], lr=self.learning_rate
        )
        best_state, stale = None, 0
        for epoch in range(1, num_epochs + 1):
            loss, accuracy = train_epoch(self.reward_model, loader, optimizer, self.device)
            self.history["losses"].append(loss)
            self.history["accuracy"].append(accuracy)
            self.history["epochs"].append(len(self.history["epochs"]) + 1)
            val_accuracy = accuracy
            if val_loader is not None:
                val_loss, val_accuracy = evaluate_loader(self.reward_model, val_loader, self.device)
                self.history["val_losses"].append(val_loss)
                self.history["val_accuracy"].append(val_accuracy)
            if val_accuracy > self.best_val_accuracy:
                self.best_val_accuracy, stale = val_accuracy, 0
                best_state = {k: v.detach().clone() for k, v in self.reward_model.state_dict().items()}
                if save_dir is not None:
                    self.save_checkpoint(Path(save_dir) / "best_model")
            else:
                stale += 1
            if save_dir is not None and not save_best_only:
                self.save_checkpoint(Path(save_dir) / f"epoch_{epoch}")
            if patience is not None and stale >= patience:
                log.info("no better validation accuracy for %d epochs: stopping after epoch %d", patience, epoch)
                break
        if best_state is not None:
            self.reward_model.load_state_dict(best_state)
        return self.history

    def evaluate(self, data: list[dict]) -> dict[str, float]:
        loss, accuracy = evaluate_reward_model(
            self.reward_model, data, self.tokenizer, self.device, self.batch_size, self.max_length
        )
        return {"loss": loss, "accuracy": accuracy}

    def metadata(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "seed": self.seed,
            "hidden_size": self.reward_model.hidden_size,
            "freeze_base": self.reward_model.freeze_base,
            "best_val_accuracy": self.best_val_accuracy,
        }

    def save_checkpoint(self, path: str | Path) -> None:
        """`{path}.pt` (weights and history) and `{path}_metadata.json` (hyperparameters), each written whole."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.reward_model.state_dict(), "history": self.history}
        tmp = path.with_name(path.name + ".pt.tmp")
        torch.save(state, tmp)
        tmp.replace(path.with_name(path.name + ".pt"))
        atomic_write_text(path.with_name(path.name + "_metadata.json"), json.dumps(self.metadata(), indent=2) + "\n")

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        state = torch.load(path.with_name(path.name + ".pt"), map_location=self.device, weights_only=True)
        self.reward_model.load_state_dict(state["model"])
        self.history = {key: list(values) for key, values in state["history"].items()}
        meta = json.loads(path.with_name(path.name + "_metadata.json").read_text())
        if meta["hidden_size"] != self.reward_model.hidden_size:
            raise ValueError(
                f"{path}: saved with hidden_size {meta['hidden_size']}, this model has {self.reward_model.hidden_size}"
            )
        self.learning_rate, self.batch_size = meta["learning_rate"], meta["batch_size"]
        self.max_length, self.seed, self.best_val_accuracy = meta["max_length"], meta["seed"], meta["best_val_accuracy"]
