"""Models: presets built from a config (Llama-style and the spiking bdh ones), local Hugging Face folders, LoRA,
and the byte tokenizer. Importing any of it registers the bdh model with transformers' Auto classes and the bdh
`spiking` step plug-in (so a run file may name it)."""

from trainguard.models import bdh as _bdh  # noqa: F401  (AutoConfig / AutoModelForCausalLM registration)
from trainguard.models import spiking as _spiking  # noqa: F401  (registers the "spiking" step plug-in)
