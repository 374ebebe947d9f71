"""One registry dict per plug-in kind, filled by a decorator; YAML names pick from it."""

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps the names used in config files to plug-in classes of one kind (objective, task, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            allowed = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} {name!r}; allowed: {allowed}") from None

    def config_of(self, value: Any) -> Any:
        """Validate a `{name: ..., ...}` mapping (or a bare name) against the `Config` class its plug-in
        registered; other values pass through for pydantic to judge."""
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            return value
        name = value.get("name")
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name].Config.model_validate(value)  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
