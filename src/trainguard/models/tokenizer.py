"""A byte-level tokenizer: the 256 byte values plus <pad>, <bos>, <eos>; no merges, nothing to download.
With special tokens on (the default of `tok(text)`), it puts <bos> first, exactly as training does.

Saved with every exported model so `AutoTokenizer.from_pretrained(dir)` loads it offline.
"""

from functools import cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


@cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, the alphabet of the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Token id = byte value; special tokens follow at 256, 257, 258."""
    vocab = {char: b for b, char in byte_to_char().items()}
    for i, tok in enumerate(SPECIAL_TOKENS):
        vocab[tok] = 256 + i
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    # The tokenizer itself puts <bos> first, as training does: an exported model then works through plain
    # AutoTokenizer + generate, with no trainguard code at load time.
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B:1", special_tokens=[("<bos>", 257)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", model_max_length=1 << 20
    )
