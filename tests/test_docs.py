"""The README's config reference is the one generated from config.py."""

from pathlib import Path

from trainguard.config_docs import config_reference

README = Path(__file__).parents[1] / "README.md"


def test_readme_config_reference_is_current():
    text = README.read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    assert block == config_reference(), "regenerate with: trainguard config schema --markdown"


def test_every_field_has_a_description():
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    assert rows and all(not line.rstrip().endswith("|  |") for line in rows)
