"""SFT on one GPU: a ~0.5B-parameter Llama-style model built from a config, bf16 autocast, trained by the real
pipeline (`trainguard.api.run`); records tokens/s and MFU (perf/mfu, against the device's bf16 peak in
engine/flops.py). On a machine without a CUDA GPU it says so and measures nothing.

`--fsdp` trains with `run.fsdp` (FSDP2 over the one GPU: the wrapping, sharded checkpoints every
`--steps // 2` steps); resume from sharded checkpoints is tested on CPU processes in tests/test_fsdp.py.

Run: `python bench/gpu.py [--steps 30] [--compile] [--fsdp]` on the GPU machine (the device tool); paste its JSON into
bench/RESULTS.md with the machine.
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

import torch


def model_folder(path: Path) -> Path:
    """A Llama-style ~0.5B model (hidden 1536, 16 layers, MLP 4096, GQA 12/4 heads) with the byte vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainguard.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=1536, intermediate_size=4096, num_hidden_layers=16,
        num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def records(path: Path, n: int, length: int) -> Path:
    """Byte-text records of about `length` tokens (prompt a tenth of it): throughput, not learning, is measured."""
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "sigma", "omega", "kappa", "theta"]

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k // 6))[:k]

    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"prompt": text(length // 10), "completion": text(length - length // 10 - 2)}) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--length", type=int, default=2048, help="tokens per example")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--fsdp", action="store_true", help="run.fsdp: FSDP2 over this one GPU")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: bench/gpu.py measures nothing (run it where the device tool lends one)")
        sys.exit(0)

    from trainguard import api

    tmp = Path(tempfile.mkdtemp())
    cfg = {
        "run": {"name": "gpu", "out_dir": str(tmp / "runs"), "mixed_precision": "bf16", "compile": args.compile,
                "fsdp": args.fsdp},
        "model": {"path": str(model_folder(tmp / "model"))},
        "tokenizer": {"max_length": args.length},
        "data": {"sources": [{"path": str(records(tmp / "data.jsonl", 64 * args.batch_size, args.length))}]},
        "stages": [
            {
                "name": "sft", "objective": "sft", "max_steps": args.steps, "batch_size": args.batch_size,
                "optimizer": {"lr": 1e-4}, "eval_every": 10**6,
                "save_every": args.steps // 2 if args.fsdp else 10**6,
            }
        ],
        "tracking": {"tensorboard": False, "progress": "off"},
    }  # fmt: skip
    result = api.run(cfg)
    rows = api.metrics(result, ["perf/tokens_per_s", "perf/mfu", "perf/step_time_s"])
    skip = max(3, args.steps // 5)  # warm-up (and compile) steps

    def median(key: str) -> float:
        return statistics.median(r["value"] for r in rows if r["key"] == key and r["step"] > skip)

    out = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "params": sum(p.numel() for p in api.load_model(result)[0].parameters()),
        "batch": f"{args.batch_size} x {args.length} tokens",
        "compile": args.compile,
        "fsdp": args.fsdp,
        "tokens_per_s": round(median("perf/tokens_per_s")),
        "mfu": round(median("perf/mfu"), 4),
        "step_s": round(median("perf/step_time_s"), 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
