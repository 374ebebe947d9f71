"""Chat-formatted data: conversations rendered through the tokenizer's chat template, loss on every
assistant turn and nowhere else; the template travels with the exported tokenizer."""

import json

from transformers import AutoTokenizer
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.data.batches import collate, tokenize_chat
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.track.store import read_metrics

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "bye"},
    {"role": "assistant", "content": "ciao"},
]


def test_loss_falls_on_every_assistant_turn_and_nowhere_else():
    tok = byte_tokenizer()
    tok.chat_template = TEMPLATE
    ex, cut = tokenize_chat(tok, CONVERSATION, 256)
    assert not cut
    batch = collate([ex], tok.pad_token_id)
    ids = batch.input_ids[0][batch.completion_mask[0]].tolist()
    assert tok.decode(ids) == "hello<eos>ciao<eos>"  # both answers, each with its end (jinja trims the newlines)
    assert tok.decode(batch.input_ids[0].tolist()).startswith("<|system|>be brief<|user|>hi<|assistant|>")


def test_a_long_conversation_loses_its_start_not_its_last_answer():
    tok = byte_tokenizer()
    tok.chat_template = TEMPLATE
    ex, cut = tokenize_chat(tok, CONVERSATION, 30)
    assert cut and len(ex.ids) == 30 and tok.decode(ex.ids).endswith("<|assistant|>ciao<eos>")
    assert tokenize_chat(tok, CONVERSATION, 4) == (None, True)  # "ciao<eos>" alone does not fit
    assert tokenize_chat(tok, CONVERSATION, 5) == (None, True)  # nor with nothing before its first token
    kept, _ = tokenize_chat(tok, CONVERSATION, 6)
    assert tok.decode(kept.ids) == ">ciao<eos>" and kept.targets == [False] + [True] * 5


def test_a_template_that_does_not_render_turn_by_turn_is_named():
    from trainguard.data.sources import tokenize_all

    tok = byte_tokenizer()
    opens = "{% if add_generation_prompt %}!{% endif %}"  # a marker the finished turn does not carry
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}" + opens
    out = tokenize_all([{"messages": CONVERSATION}], tok, 256)
    assert (out.unrenderable, out.dropped, out.examples) == (1, 0, [])


def test_chat_evaluation_prompts_go_through_the_template():
    from trainguard.eval.accuracy import encode_prompts

    tok = byte_tokenizer()
    tok.chat_template = TEMPLATE
    (ids,) = encode_prompts(tok, ["hi"], chat=True)
    assert tok.decode(ids) == "<|user|>hi<|assistant|>"


def test_a_chat_run_trains_on_conversations_and_exports_the_template(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"count to {i}"},
                          {"role": "assistant", "content": " ".join(map(str, range(1, i % 5 + 2)))}]}
            for i in range(80)]  # fmt: skip
    rows += [{"prompt": "say yes", "completion": "yes"}] * 4  # plain rows become one user and one assistant turn
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = tiny_config(tmp_path / "runs", data={"sources": [{"path": str(data)}], "chat": True})
    cfg["tokenizer"] = {"max_length": 64, "chat_template": TEMPLATE}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    losses = [v for _, _, k, v, _ in read_metrics(run / "metrics.db") if k == "loss/train"]
    assert len(losses) == 12 and losses[-1] < losses[0]
    exported = AutoTokenizer.from_pretrained(run / "final")
    assert exported.chat_template == TEMPLATE


def test_conversations_without_data_chat_are_refused(tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": CONVERSATION}) + "\n")
    cfg = tiny_config(tmp_path / "runs", data={"sources": [{"path": str(data)}]})
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 2 and "need data.chat: true" in result.output
