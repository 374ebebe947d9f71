"""Reward-model training speed: seconds per epoch on 100 preference pairs with a GPT-2-sized model (768 hidden,
12 layers, 12 heads, built from a config: nothing downloaded) on the CPU, through `train_reward_model`.

The pairs are verified DED pairs (a problem statement with a program; byte tokens, cut at max_length 512),
so most texts fill the 512 tokens: close to the write-up's setting, which reports ~5 minutes per epoch for
GPT-2 on CPU. Run: `python bench/reward_epoch.py [--pairs 100 --epochs 1 --batch-size 4]`."""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from trainguard.data.collect import collect
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.reward import PreferenceDataset, RewardModel, train_reward_model
from trainguard.tasks import build_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "pairs.jsonl"
    collect([build_task("ded")], args.pairs, path, pairs=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tok = byte_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=768, n_layer=12, n_head=12, n_positions=1024)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    gpt2 = GPT2LMHeadModel(config)
    model = RewardModel(gpt2, hidden_size=768)
    dataset = PreferenceDataset(rows, tok, args.max_length)
    tokens = int(dataset.chosen[1].sum() + dataset.rejected[1].sum())
    start = time.perf_counter()
    history = train_reward_model(
        model,
        rows,
        tok,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=1e-5,
        max_length=args.max_length,
        log_interval=0,
    )
    per_epoch = (time.perf_counter() - start) / args.epochs
    record = {
        "pairs": len(rows),
        "mean_tokens_per_text": tokens / (2 * len(rows)),
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "seconds_per_epoch": per_epoch,
        "loss": history["losses"],
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
