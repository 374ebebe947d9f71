"""Models: presets built from a config (Llama-style and the spiking bdh ones), local Hugging Face folders, LoRA,
and the byte tokenizer. Importing any of it registers the bdh model with transformers' Auto classes; its
`spiking` step plug-in is registered with the other plug-ins, by `trainguard.objectives` (it builds on them)."""

from trainguard.models import bdh as _bdh  # noqa: F401  (AutoConfig / AutoModelForCausalLM registration)
