"""Llama-style presets built from a config with random init; sizes counted with the byte vocabulary."""

from transformers import LlamaConfig

# name: (hidden, layers, heads, intermediate) -> parameters with a 259-token vocabulary
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 4, 4, 352),  # ~0.87M
    "small": (320, 8, 5, 864),  # ~10.1M
    "base": (576, 12, 9, 1536),  # ~48M
}


def preset_config(name: str, vocab_size: int, max_positions: int, bos: int, eos: int, pad: int) -> LlamaConfig:
    hidden, layers, heads, intermediate = PRESETS[name]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
