"""Rollouts sampled by vLLM (`source.sampler: vllm`; `pip install 'trainguard[vllm]'` on a CUDA machine).

vLLM runs in this process beside the policy ("colocate", as TRL's and OpenRLHF's colocated engines do), one
engine per rank on the rank's GPU. It is built once per stage from the policy's config alone (`load_format:
dummy`), and before each step's sampling the policy's current weights are pushed into it under their
transformers names, LoRA adapters folded in (W + the adapter's delta, computed aside: the training weights are
never merged and unmerged, which would move them by rounding). Prompts go in as token ids and responses come
back as token ids, so vLLM never needs our tokenizer. Each prompt's group draws from its own seed, derived from
the step's seed: a resumed run asks vLLM for the same samples.

Checked here on CPU: the weights pushed equal a merged export's, name for name and bit for bit, and a missing
vLLM or GPU stops the run naming the extra. The sampling itself needs a CUDA GPU and vLLM's wheels."""

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field
from torch import nn

from trainguard import ranks
from trainguard.errors import ConfigError
from trainguard.models.bdh import is_bdh
from trainguard.models.loading import is_lora
from trainguard.section import Section


class VLLMSection(Section):
    gpu_memory_utilization: float = Field(
        0.3, gt=0, lt=1, description="Share of the GPU's memory vLLM may take (weights + KV cache) beside training."
    )
    max_model_len: int | None = Field(
        None, gt=0, description="Longest prompt + response vLLM plans for (None: the model's)."
    )
    enforce_eager: bool = Field(False, description="No CUDA graphs: slower sampling, quicker start, less memory.")


def hf_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's weights under the names of its transformers checkpoint, with LoRA deltas added."""
    if not is_lora(model):
        yield from model.state_dict().items()
        return
    base = model.get_base_model()
    adapted = {name: module for name, module in base.named_modules() if hasattr(module, "get_delta_weight")}
    for key, tensor in base.state_dict().items():
        if ".lora_" in key or "lora_embedding" in key:
            continue
        owner, _, leaf = key.rpartition(".base_layer.")
        if owner in adapted and leaf == "weight":
            module = adapted[owner]
            tensor = tensor + sum(module.get_delta_weight(a) for a in module.active_adapters)
        yield (f"{owner}.{leaf}" if owner else key), tensor


def require_vllm() -> Any:
    """The vllm module, or a ConfigError that says what is missing."""
    if not torch.cuda.is_available():
        raise ConfigError("source.sampler: vllm needs a CUDA GPU; use 'grouped' or 'generate' here")
    try:
        import vllm
    except ImportError:
        raise ConfigError(
            "source.sampler: vllm needs vLLM: pip install 'trainguard[vllm]' (on a CUDA machine), "
            "or use 'grouped' or 'generate'"
        ) from None
    return vllm


class VLLMSampler:
    """A colocated vLLM engine that samples `group_size` responses per prompt with the policy's latest weights."""

    def __init__(self, policy: nn.Module, section: VLLMSection, max_len: int, seed: int) -> None:
        self.vllm = vllm = require_vllm()
        if is_bdh(policy):
            raise ConfigError("source.sampler: vllm cannot run BDH's spiking layers; use 'generate'")
        for key, value in (("RANK", ranks.rank()), ("LOCAL_RANK", ranks.rank()), ("WORLD_SIZE", ranks.world_size())):
            os.environ.setdefault(key, str(value))  # the external launcher reads the launch's ranks
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29513")
        config = (policy.get_base_model() if is_lora(policy) else policy).config
        self.folder = tempfile.TemporaryDirectory(prefix="trainguard-vllm-")
        config.save_pretrained(self.folder.name)  # the architecture; the weights come from `push`
        self.llm = vllm.LLM(
            model=self.folder.name,
            load_format="dummy",
            skip_tokenizer_init=True,
            dtype=str(next(policy.parameters()).dtype).removeprefix("torch."),
            gpu_memory_utilization=section.gpu_memory_utilization,
            max_model_len=section.max_model_len or max_len,
            enforce_eager=section.enforce_eager,
            distributed_executor_backend="external_launcher",
            seed=seed,
        )

    def push(self, policy: nn.Module) -> None:
        """The policy's current weights into the engine; its prefix cache holds the old weights' keys: cleared."""
        model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        with torch.no_grad():
            model.load_weights(hf_weights(policy))
        self.llm.reset_prefix_cache()

    def sample(
        self,
        prompts: list[list[int]],
        group: int,
        max_new: int,
        eos: int,
        temperature: float | None,
        top_p: float,
        seed: int,
    ) -> list[list[int]]:
        """`group` responses per prompt, prompt by prompt; each ends at EOS (kept) or after `max_new` tokens."""
        params = [
            self.vllm.SamplingParams(
                n=group,
                temperature=temperature or 0.0,
                top_p=top_p,
                max_tokens=max_new,
                stop_token_ids=[eos],
                seed=seed * 1_000_003 + k,
            )
            for k in range(len(prompts))
        ]
        requests = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        responses = []
        for request in outputs:
            for out in request.outputs:
                ids = list(out.token_ids)
                if out.finish_reason == "stop" and (not ids or ids[-1] != eos):
                    ids.append(eos)  # stopped on EOS: the response carries it, as `generate`'s do
                responses.append(ids)
        return responses

    def close(self) -> None:
        self.folder.cleanup()
