"""Channel types by name, found through the `crmd.channels` entry-point group.

A third party adds a channel type by installing a package that declares, in its
pyproject.toml, `[project.entry-points."crmd.channels"] fax = "crmd_fax:FaxChannel"`.
crmd's own types (task, sms, email, log) are declared the same way.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from crmd.channels.base import BaseChannel
from crmd.errors import ConfigError

GROUP = "crmd.channels"


def available() -> dict[str, EntryPoint]:
    """Every installed channel type, by name."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def channel_type(name: str) -> type[BaseChannel]:
    """The class of channel type `name`; ConfigError if none is installed or it is broken."""
    types = available()
    if name not in types:
        raise ConfigError(
            f"no channel type '{name}' is installed; installed: {', '.join(sorted(types))}"
        )
    try:
        loaded = types[name].load()
    except Exception as exc:  # a broken plugin must not take the whole daemon down
        raise ConfigError(
            f"channel type '{name}' ({types[name].value}) cannot be loaded: {exc}"
        ) from None
    if not (isinstance(loaded, type) and issubclass(loaded, BaseChannel)):
        raise ConfigError(
            f"channel type '{name}' ({types[name].value}) is not a crmd.channels.BaseChannel"
        )
    return loaded
