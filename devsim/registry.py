"""Where the members of every family come from: Python entry points, read on first use.

A family of interchangeable parts (devices, node-noise sources, activations,
estimators, optimizers, data sources, network layers) is a parameter base class declared with
``family="..."`` (:mod:`devsim.params`); a member registers itself when its class is
defined (``kind="..."``). This module makes sure those classes are defined before
anyone looks a member up: it loads every entry point of the family's group, devsim's
own included::

    [options.entry_points]
    devsim.devices =
        fefet = devsim_fefet:FeFETParams      # a third-party class
        devsim = devices                      # a package: every module is imported

An entry point may name a class (checked to be a member of the family under the
entry point's name), a module, or a package (all of whose modules are imported, so a
new module dropped into ``devices/`` is found with no other edit). Device presets come
the same way from the group ``devsim.presets``: packages holding ``NAME.yaml`` files.

Discovery runs once per family; a plugin that fails to load raises
:class:`PluginError` naming the entry point and its distribution, in one line.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from importlib import metadata
from importlib import resources
from pathlib import Path
from types import ModuleType

GROUPS = {"device": "devsim.devices", "noise": "devsim.noise",
          "activation": "devsim.activations", "estimator": "devsim.estimators",
          "optimizer": "devsim.optimizers", "data": "devsim.data", "layer": "devsim.layers"}
"""The entry-point group of each family."""

PRESET_GROUP = "devsim.presets"
"""Entry points naming packages whose ``*.yaml`` files are device presets."""

_lock = threading.RLock()
_discovered: set[str] = set()


class PluginError(ImportError):
    """A plugin that could not be loaded, or that registers something other than it says."""


def _where(ep: metadata.EntryPoint) -> str:
    dist = f", distribution {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}' in group {ep.group}{dist}"


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    """The group's entry points, one per (name, value) (an installed distribution seen
    twice on sys.path lists its entry points twice)."""
    seen, out = set(), []
    for ep in metadata.entry_points(group=group):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return sorted(out, key=lambda e: (e.name, e.value))


def _import_all(package: ModuleType, ep: metadata.EntryPoint) -> None:
    """Import every module of ``package`` (its members register as they are defined)."""
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 (reported with the entry point)
            raise PluginError(f"plugin module {info.name} ({_where(ep)}) failed to import: "
                              f"{type(exc).__name__}: {exc}") from exc


def discover(family: str, base: type) -> None:
    """Load the entry points of ``family``'s group once; ``base`` is the family's
    parameter base class, which every class an entry point names must extend."""
    with _lock:
        if family in _discovered:
            return
        _discovered.add(family)  # a plugin that looks its family up while loading
        try:
            for ep in _entry_points(GROUPS[family]):
                _load(ep, family, base)
        except BaseException:
            _discovered.discard(family)  # the next look-up tries (and reports) again
            raise


def _load(ep: metadata.EntryPoint, family: str, base: type) -> None:
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 (reported with the entry point)
        raise PluginError(f"plugin {ep.name!r} ({_where(ep)}) failed to load: "
                          f"{type(exc).__name__}: {exc}") from exc
    if isinstance(obj, ModuleType):
        if hasattr(obj, "__path__"):
            _import_all(obj, ep)
        return
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"plugin {ep.name!r} ({_where(ep)}) names {obj!r}, which is not "
                          f"a {family} parameter class ({base.__module__}.{base.__name__})")
    if obj.kind != ep.name:
        raise PluginError(f"plugin {ep.name!r} ({_where(ep)}) names a class registered as "
                          f"{family} type {obj.kind!r}; the entry point's name must be its "
                          f"type")


def provider(cls: type) -> str | None:
    """The distribution (``name version``) whose entry point contributed ``cls``, or None
    for devsim's own members."""
    family = getattr(cls, "family", None)
    if family not in GROUPS:
        return None
    for ep in _entry_points(GROUPS[family]):
        module = ep.value.split(":")[0]
        if cls.__module__ == module or cls.__module__.startswith(module + "."):
            if ep.dist is None or ep.dist.name == "devsim-lab":
                return None
            return f"{ep.dist.name} {ep.dist.version}"
    return None


def preset_files() -> dict[str, Path]:
    """``{name: file}`` of every installed preset (``NAME.yaml`` in the packages of the
    ``devsim.presets`` group); a name given twice keeps the first in entry-point order."""
    found: dict[str, Path] = {}
    for ep in _entry_points(PRESET_GROUP):
        try:
            folder = resources.files(ep.value)
        except Exception as exc:  # noqa: BLE001 (reported with the entry point)
            raise PluginError(f"preset package {ep.value!r} ({_where(ep)}) cannot be read: "
                              f"{type(exc).__name__}: {exc}") from exc
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if item.name.endswith((".yaml", ".yml")):
                found.setdefault(item.name.rsplit(".", 1)[0], Path(str(item)))
    return found
