"""The README's config reference is the one generated from the config classes."""

from pathlib import Path

from trainguard.config_docs import config_reference, readme_block

README = Path(__file__).parents[1] / "README.md"


def test_readme_config_reference_is_current():
    assert readme_block(README.read_text()) == config_reference(), "regenerate with: make docs"


def test_every_field_has_a_description():
    rows = [line for line in config_reference().splitlines() if line.startswith("| `")]
    assert rows and all(not line.rstrip().endswith("|  |") for line in rows)
