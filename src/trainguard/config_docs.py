"""The README's config reference, generated from the field descriptions in config.py (written once)."""

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from trainguard.config import RunConfig
from trainguard.data.sources import SOURCES
from trainguard.objectives import OBJECTIVES, STEP_PLUGINS

PIPE = "\\|"  # a literal | inside a markdown table cell
PLUGIN_FIELDS = ("objective", "source", "plugins")  # picked from a registry: their keys are listed per plug-in below


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "")
    return text.replace("NoneType", "null")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is None:
            return "required"
        made = field.default_factory()
        if isinstance(made, list) and all(isinstance(m, BaseModel) for m in made):
            made = [m.model_dump(mode="json") for m in made]  # a list of sections reads as its YAML would
        return "see keys below" if isinstance(made, BaseModel) else f"`{made}`"
    value = field.default
    return "null" if value is None else f"`{value}`"


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        nested = [m for m in _models_in(field.annotation) if m is not model]
        key = f"{prefix}{name}"
        if name in PLUGIN_FIELDS:
            rows.append((key, "name or mapping", _default(field), field.description or ""))
        elif nested:
            rows.append((key, "section", _default(field), field.description or ""))
            suffix = "[]" if typing.get_origin(field.annotation) is list else ""
            for sub in dict.fromkeys(nested):
                rows += _rows(sub, f"{key}{suffix}.")
        else:
            rows.append((key, f"`{_type_name(field.annotation)}`", _default(field), field.description or ""))
    return rows


def config_reference() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, desc in _rows(RunConfig, ""):
        kind, default, desc = (x.replace("|", PIPE) for x in (kind, default, desc))
        lines.append(f"| `{key}` | {kind} | {default} | {desc} |")
    registries: list[tuple[str, Any]] = [("Objectives (`stages[].objective`)", OBJECTIVES)]
    registries.append(("Sources (`stages[].source`)", SOURCES))
    registries.append(("Step plug-ins (`stages[].plugins[]`)", STEP_PLUGINS))
    for title, registry in registries:
        lines += ["", f"{title}:", ""]
        # a user's plug-ins document themselves
        built_in = [n for n in registry if registry.get(n).__module__.startswith("trainguard.")]
        for name in built_in:
            fields = registry.get(name).Config.model_fields.items()
            keys = ", ".join(f"`{k}` ({_default(f)}): {f.description}" for k, f in fields if k != "name")
            lines.append(f"- `{name}`: {keys or 'no keys'}")
        if not built_in:
            lines.append("- none built in yet (register your own)")
    return "\n".join(lines) + "\n"


START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def readme_block(text: str) -> str:
    return text[text.index(START) + len(START) : text.index(END)]


def sync_readme(path: Path) -> None:
    """Rewrite the README's reference block from the config (`make docs`)."""
    text = path.read_text()
    path.write_text(text.replace(readme_block(text), config_reference()))
