# Set-up and everyday commands. torch is installed first and pinned: any other torch request
# would pull several GB of CUDA wheels on these machines.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: demo quickstart curriculum builderbrain dragon test test-fast bench bench-trl lint clean docs sandbox

# bubblewrap isolates model-written programs; without it the sandbox falls back to resource limits and says so.
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }; }; } || \
		echo "warning: bubblewrap is missing and cannot be installed here (sudo apt-get install bubblewrap)"

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# The whole methodology: SFT -> reward model -> RL under a format constraint -> deployment gate -> eval table.
PIPELINE_PAIRS := data/reverse_pipeline_pairs.jsonl

$(PIPELINE_PAIRS): | $(STAMP)
	$(BIN)/trainguard data collect --tasks reverse --n 10000 --pairs --out $@ \
		--param reverse.min_len=3 --param reverse.max_len=6

demo: $(STAMP) sandbox $(PIPELINE_PAIRS)
	HF_HUB_OFFLINE=1 $(BIN)/trainguard run examples/pipeline.yaml --overwrite

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/trainguard run examples/quickstart.yaml --overwrite

curriculum: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/trainguard run examples/curriculum.yaml --overwrite

builderbrain: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/trainguard run examples/builderbrain.yaml --overwrite

dragon: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/trainguard run examples/dragon.yaml --overwrite

test: $(STAMP) sandbox
	$(BIN)/ruff check src tests bench
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadscope

test-fast: $(STAMP) sandbox
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadscope -m "not slow"

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/engine_overhead.py --steps 100
	HF_HUB_OFFLINE=1 $(BIN)/trainguard faults bench --out bench/faults.json
	$(BIN)/python bench/sandbox.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/reward_model.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/reward_constitution.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/reward_epoch.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/sft_packing.py
	$(BIN)/python bench/env_workers.py --env textcraft --episodes 32 --workers 2 --repeats 3
	$(BIN)/python bench/env_workers.py --env sciworld --episodes 8 --workers 2 4 --repeats 2

# TRL only ever lives in its own venv (the `bench` extra), never in .venv: trainguard does not depend on it.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	test -d $(BENCH_VENV) || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q $(TORCH)
	$(BENCH_VENV)/bin/pip install -q -e ".[bench]" $(TORCH)
	touch $(BENCH_STAMP)

bench-trl: $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2 $(BENCH_VENV)/bin/python bench/grpo_vs_trl.py --lean --fused
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 $(BENCH_VENV)/bin/python bench/engine_overhead.py --steps 100

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache

docs: $(STAMP)
	$(BIN)/python -c "from pathlib import Path; from trainguard.config_docs import sync_readme; sync_readme(Path('README.md'))"
