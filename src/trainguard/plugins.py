"""Users' own plug-ins: a run file's `imports:` names Python files or modules imported before the config
is validated, so the objectives, sources, step plug-ins and actions they register are known to it."""

import importlib
import importlib.util
import sys
from pathlib import Path

from trainguard.errors import ConfigError

_loaded: dict[str, str] = {}  # resolved file or module name -> module name


def resolve_plugin(entry: str, base: Path) -> str:
    """A file relative to the config's folder or the working directory becomes absolute; a module name stays."""
    if not entry.endswith(".py"):
        return entry
    for root in (base, Path.cwd()):
        candidate = (root / entry).resolve()
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(f"imports: file {entry!r} not found (looked in {base} and {Path.cwd()})")


def load_plugin(entry: str) -> str:
    """Import a plug-in once per process; returns its module name."""
    if entry in _loaded:
        return _loaded[entry]
    try:
        if entry.endswith(".py"):
            name = f"trainguard_plugin_{Path(entry).stem}"
            spec = importlib.util.spec_from_file_location(name, entry)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            name = importlib.import_module(entry).__name__
    except Exception as err:
        raise ConfigError(f"imports: importing {entry!r} failed: {type(err).__name__}: {err}") from None
    _loaded[entry] = name
    return name
