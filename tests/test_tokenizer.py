"""The byte tokenizer: one token per byte, reloadable offline by AutoTokenizer."""

from transformers import AutoTokenizer

from trainguard.models.tokenizer import byte_tokenizer


def test_ids_are_byte_values_and_specials_follow():
    tok = byte_tokenizer()
    assert tok.encode("Az\n", add_special_tokens=False) == [65, 122, 10]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, len(tok)) == (256, 257, 258, 259)


def test_any_text_round_trips_through_bytes():
    tok = byte_tokenizer()
    text = "héllo — 世界 \t\x00 x"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_saved_tokenizer_loads_with_auto_tokenizer(tmp_path):
    byte_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert tok.encode("abc", add_special_tokens=False) == [97, 98, 99]
    assert tok.eos_token == "<eos>" and tok.pad_token_id == 256
