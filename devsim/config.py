"""YAML -> validated parameter dataclasses, with errors that say where.

The schema is the dataclasses themselves (:mod:`devsim.params`). Loading walks the
YAML node tree (so every key has a line number and duplicate keys are caught), then
converts each mapping into its dataclass field by field. Every problem found is
reported as ``file:line: key.path: rule, got value``; unknown keys get the nearest
valid key as a suggestion. ``--set a.b[1].c=value`` overrides go through the same
conversion, so a tuning run cannot produce a config a file could not.
"""
from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from devsim.params import ParamError, Params, field_violation, format_path
from devsim.registry import preset_files

__all__ = ["ConfigError", "load", "loads", "from_data", "parse_overrides", "apply_overrides",
           "dump"]


class ConfigError(ValueError):
    """One or more configuration problems, each a complete one-line message."""

    def __init__(self, messages: list[str]):
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


# ---------------------------------------------------------------- YAML with lines
def _walk(node: yaml.Node, path: tuple, lines: dict, errors: list, source: str):
    """Record the line of every key path and reject duplicate keys."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                errors.append(f"{source}:{key_node.start_mark.line + 1}: "
                              f"{format_path(path + (key,))}: duplicate key "
                              f"(first given on line {seen[key]})")
                continue
            seen[key] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, errors, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, errors, source)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{source}{line}: not valid YAML: {problem}"]) from None
    if node is None:
        return {}, {(): 1}
    lines, errors = {}, []
    _walk(node, (), lines, errors, source)
    if errors:
        raise ConfigError(errors)
    data = yaml.constructor.SafeConstructor().construct_document(node)
    return data, lines


# ---------------------------------------------------------------- conversion
class _Context:
    def __init__(self, source: str, lines: dict, base_dir: Path | None = None):
        self.source, self.lines, self.errors = source, lines, []
        self.base_dir = base_dir or Path.cwd()

    def error(self, path: tuple, message: str):
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        where = f"{self.source}:{line}" if line is not None else self.source
        self.errors.append(f"{where}: {format_path(path)}: {message}" if path
                           else f"{where}: {message}")


def _describe(value) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _convert(tp, value, path: tuple, ctx: _Context):
    """``value`` (plain YAML data) converted to type ``tp``; errors go to ``ctx``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, path, ctx)
    if origin is tuple:
        if not isinstance(value, list):
            ctx.error(path, f"must be a list, got {_describe(value)}")
            return ()
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(item_type, v, path + (i,), ctx) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, Params):
        return _convert_params(tp, value, path, ctx)
    if tp is bool:
        if not isinstance(value, bool):
            ctx.error(path, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            ctx.error(path, f"must be an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ctx.error(path, f"must be a number, got {_describe(value)}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            ctx.error(path, f"must be a string, got {_describe(value)}")
        return value
    return value


def _convert_params(cls: type[Params], value, path: tuple, ctx: _Context):
    if cls.is_family():  # pick the member
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            ctx.error(path, f"must be a mapping with a 'type' key, got {_describe(value)}")
            return None
        if "preset" in value:
            value = _with_preset(value, path, ctx)
            if value is None:
                return None
        kind = value.get("type", cls.default_kind)
        members = cls.members()
        if kind is not None and not isinstance(kind, str):
            ctx.error(path + ("type",), f"must name a {cls.family} type, got {_describe(kind)}")
            return None
        if kind not in members:
            known = sorted(members)
            hint = difflib.get_close_matches(str(kind), known, n=1)
            tip = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(path + ("type",) if kind is not None else path,
                      f"unknown {cls.family} type {kind!r}{tip}; known: {', '.join(known)}")
            return None
        cls = members[kind]
        value = {k: v for k, v in value.items() if k != "type"}
    elif cls.kind is not None and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "type" or v != cls.kind}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        ctx.error(path, f"must be a mapping, got {_describe(value)}")
        return None
    names = [f.name for f in fields(cls)]
    kwargs, bad = {}, False
    for key in value:
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            tip = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(path + (key,), f"unknown key{tip}; {cls.__name__} takes: "
                      f"{', '.join(names) or 'no keys'}")
            bad = True
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in value:
            before = len(ctx.errors)
            kwargs[f.name] = _convert(hints[f.name], value[f.name], path + (f.name,), ctx)
            if len(ctx.errors) == before:
                violation = field_violation(f, kwargs[f.name])
                if violation:
                    ctx.error(path + violation.path, violation.message)
            bad |= len(ctx.errors) > before
        elif f.default is MISSING and f.default_factory is MISSING:
            ctx.error(path, f"missing required key '{f.name}'")
            bad = True
    if bad:
        return None
    try:
        return cls(**kwargs)
    except ParamError as exc:
        ctx.error(path + exc.path, exc.message)
        return None


def _preset_folders(base_dir: Path) -> list[tuple[str, Path]]:
    """(origin, folder) of the preset folders searched by name, in order: ``presets/``
    beside the config, then each folder of ``DEVSIM_PRESETS`` (``os.pathsep``-separated)."""
    return [("beside the config", base_dir / "presets")] + [
        ("DEVSIM_PRESETS", Path(p)) for p in os.environ.get("DEVSIM_PRESETS", "").split(os.pathsep)
        if p]


def preset_file(name: str, base_dir: Path) -> Path | None:
    """Where preset ``name`` is: a ``.yaml`` path (relative to ``base_dir``, the config's
    folder), else ``NAME.yaml`` in ``base_dir/presets``, in each folder of the
    ``DEVSIM_PRESETS`` environment variable (``os.pathsep``-separated), or among the
    installed presets (:func:`devsim.registry.preset_files`); None if none has it."""
    if name.endswith((".yaml", ".yml")):
        file = base_dir / name
        return file if file.is_file() else None
    for _, folder in _preset_folders(base_dir):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return preset_files().get(name)


def preset_names(base_dir: Path) -> list[str]:
    """Every preset name :func:`preset_file` finds from ``base_dir``."""
    return sorted({p.name for p in preset_catalog(base_dir)})


@dataclass(frozen=True)
class PresetInfo:
    """One preset file found by name (what ``devsim presets`` lists)."""

    name: str
    kind: str
    """Its ``type:`` (the device, neuron or noise model it configures)."""
    origin: str
    """Where it was found: ``beside the config``, ``DEVSIM_PRESETS`` or ``installed``."""
    file: Path
    source: str
    """Its one-line source: the ``# Source:`` comment line, else its first comment line."""
    shadowed: bool
    """Whether a preset of the same name earlier in the search order wins."""


def _describe_preset(file: Path) -> tuple[str, str]:
    """(type, one-line source) of a preset file; a file that cannot be read says so."""
    try:
        text = file.read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        return "?", f"cannot be read: {str(exc).splitlines()[0]}"
    comments = [line.lstrip("#").strip() for line in text.splitlines()
                if line.startswith("#") and line.lstrip("#").strip()]
    cited = [c.split(":", 1)[1].strip() for c in comments if c.lower().startswith("source:")]
    kind = data.get("type", "?") if isinstance(data, dict) else "?"
    return str(kind), (cited or comments or ["(no comment)"])[0]


def preset_catalog(base_dir: Path) -> list[PresetInfo]:
    """Every preset file found by name from ``base_dir`` (the config's folder), in the
    order :func:`preset_file` searches: ``presets/`` beside it, ``DEVSIM_PRESETS``, the
    installed ones; a name found again later is marked ``shadowed``."""
    found = [(origin, file) for origin, folder in _preset_folders(base_dir) if folder.is_dir()
             for file in sorted(folder.glob("*.yaml"))]
    found += [("installed", file) for file in preset_files().values()]
    seen, catalog = set(), []
    for origin, file in found:
        name = file.name.rsplit(".", 1)[0]
        kind, source = _describe_preset(file)
        catalog.append(PresetInfo(name, kind, origin, file, source, name in seen))
        seen.add(name)
    return catalog


def _with_preset(value: dict, path: tuple, ctx: _Context) -> dict | None:
    """``{preset: NAME, key: v, ...}``: the preset file's mapping with the given keys
    on top (the preset's ``type`` wins, so ``--set x.preset=NAME`` replaces a device).
    NAME is found by :func:`preset_file`."""
    name = value["preset"]
    if not isinstance(name, str) or not name:
        ctx.error(path + ("preset",), f"must name a preset, got {_describe(name)}")
        return None
    file = preset_file(name, ctx.base_dir)
    if file is None:
        hint = difflib.get_close_matches(name, preset_names(ctx.base_dir), n=1)
        tip = f" (did you mean {hint[0]!r}?)" if hint else ""
        ctx.error(path + ("preset",), f"no preset {name!r}{tip}; `devsim presets` lists them")
        return None
    try:
        text = file.read_text()
    except OSError as exc:
        ctx.error(path + ("preset",), f"cannot read preset {file}: {exc.strerror or exc}")
        return None
    try:
        data, _ = _parse_yaml(text, file.name)
    except ConfigError as exc:
        ctx.errors.extend(exc.messages)
        return None
    if not isinstance(data, dict):
        ctx.error(path + ("preset",), f"{file.name} does not hold a mapping")
        return None
    return {**data, **{k: v for k, v in value.items() if k not in ("preset", "type")}}


def from_data(cls: type[Params], data: Any, source: str = "<config>",
              lines: dict | None = None, base_dir: Path | None = None) -> Params:
    """Build and validate ``cls`` from plain data, raising :class:`ConfigError`.

    ``base_dir`` is where ``preset:`` references are resolved (default: the working
    directory)."""
    ctx = _Context(source, lines or {}, base_dir)
    result = _convert_params(cls, data, (), ctx)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return result


# ---------------------------------------------------------------- overrides
_SEGMENT = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+))((?:\[\d+\])*)$")


def _split_path(text: str) -> tuple:
    """``"a.b[1].c"`` or ``"a.b.1.c"`` -> ``("a", "b", 1, "c")``."""
    path = []
    for segment in text.strip().split("."):
        m = _SEGMENT.match(segment)
        if not m:
            raise ConfigError([f"--set {text}: cannot read key path at {segment!r}"])
        path.append(m.group(1) if m.group(1) else int(m.group(2)))
        path += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(3))]
    return tuple(path)


def parse_overrides(items: list[str]) -> list[tuple[tuple, Any]]:
    """``["a.b[1].c=0.5", ...]`` -> ``[(("a", "b", 1, "c"), 0.5), ...]`` (values as YAML)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError([f"--set {item}: expected KEY=VALUE"])
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.append((_split_path(key), value))
    return out


def apply_overrides(data: Any, overrides: list[tuple[tuple, Any]]) -> Any:
    """Set each (path, value) in nested plain data, creating mappings as needed."""
    for path, value in overrides:
        node = data
        for depth, key in enumerate(path[:-1]):
            nxt = path[depth + 1]
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    raise ConfigError([f"--set {format_path(path)}: "
                                       f"{format_path(path[:depth + 1])} does not exist"])
                node = node[key]
            else:
                if not isinstance(node, dict):
                    raise ConfigError([f"--set {format_path(path)}: "
                                       f"{format_path(path[:depth])} is not a mapping"])
                if node.get(key) is None:
                    node[key] = [] if isinstance(nxt, int) else {}
                node = node[key]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError([f"--set {format_path(path)}: index out of range"])
        elif isinstance(node, str) and last != "type":
            raise ConfigError([f"--set {format_path(path)}: {format_path(path[:-1])} "
                               f"is the short form {node!r}; set it as a mapping"])
        elif not isinstance(node, dict):
            raise ConfigError([f"--set {format_path(path)}: "
                               f"{format_path(path[:-1])} is not a mapping"])
        node[last] = value
    return data


# ---------------------------------------------------------------- entry points
def loads(text: str, cls: type[Params], source: str = "<string>",
          overrides: list[str] = (), base_dir: Path | None = None) -> Params:
    """Parse YAML ``text`` into ``cls``, applying ``--set`` style overrides."""
    data, lines = _parse_yaml(text, source)
    if overrides:
        data = apply_overrides(data if data is not None else {}, parse_overrides(list(overrides)))
    return from_data(cls, data, source, lines, base_dir)


def load(path: str | Path, cls: type[Params], overrides: list[str] = ()) -> Params:
    """Read the YAML file at ``path`` into ``cls`` (see :func:`loads`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    return loads(text, cls, source=path.name, overrides=overrides, base_dir=path.parent)


def dump(params: Params) -> str:
    """The fully resolved config as YAML (every default made explicit)."""
    return yaml.safe_dump(params.to_dict(), sort_keys=False)
