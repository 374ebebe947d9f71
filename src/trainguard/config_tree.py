"""The raw run-file tree before validation: `--set` overrides, data paths resolved against the file's folder,
dict merging; and pydantic's errors as one line per bad field. Kept apart from the schema in config.py."""

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainguard.errors import ConfigError


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per bad field: `source: path.to.field: message (got value)`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-union")))
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        got = "" if e["type"] in ("missing", "value_error") else f" (got {e.get('input')!r:.60})"
        lines.append(f"{source}: {loc}: {msg}{got}" if loc else f"{source}: {msg}{got}")
    return "\n".join(lines)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply a `--set a.b.0.c=value` (or `a.b[0].c=value`, as the README writes keys) override to a tree."""
    keys = re.sub(r"\[(\d+)\]", r".\1", dotted).split(".")
    node: Any = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def resolve_data_paths(tree: dict[str, Any], base: Path) -> None:
    """Relative data file paths are read from the config file's folder (then the working folder, as before):
    the same run file works from any directory. Written back absolute, so the resolved config is exact."""
    sections = [tree.get("data")] + [
        (stage.get("source") or {}).get("data") if isinstance(stage.get("source"), dict) else None
        for stage in tree.get("stages") or []
        if isinstance(stage, dict)
    ]
    for section in sections:
        sources = section.get("sources") if isinstance(section, dict) else None
        for src in sources if isinstance(sources, list) else []:
            if isinstance(src, dict) and isinstance(src.get("path"), str) and not Path(src["path"]).is_absolute():
                found = [p for p in (base / src["path"], Path.cwd() / src["path"]) if p.is_file()]
                if found:
                    src["path"] = str(found[0].resolve())


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> None:
    """`--set KEY.PATH=VALUE` strings (the value read as YAML) applied to a parsed run file."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE")
        try:
            set_dotted(tree, key, yaml.safe_load(raw))
        except (IndexError, ValueError, TypeError, KeyError):
            raise ConfigError(f"--set {item!r}: no such place in the config") from None
