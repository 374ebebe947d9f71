"""Models: presets built from a config, local Hugging Face folders, LoRA, and the byte tokenizer."""
