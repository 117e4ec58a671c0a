"""The config reference, generated from the parameter dataclasses themselves.

Field docstrings are read from the source (the string right under each field), so
the schema, its rules and its documentation cannot drift apart.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from dataclasses import MISSING, fields
from functools import lru_cache

import yaml

from devsim.params import Params
from devsim.registry import provider


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for the fields ``cls`` itself defines."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body, docs = tree.body[0].body, {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe_field(cls: type, name: str) -> str:
    """The docstring of field ``name``, looked up along ``cls``'s bases."""
    for klass in cls.__mro__:
        doc = field_docs(klass).get(name) if isinstance(klass, type) else None
        if doc:
            return doc
    return ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is not None and type(None) in typing.get_args(tp):
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return f"{_type_name(inner)} or null"
    if isinstance(tp, type) and issubclass(tp, Params):
        return f"{tp.family} (see below)" if tp.is_family() else "mapping"
    return getattr(tp, "__name__", str(tp))


def _default(f) -> str:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
        if isinstance(value, Params):
            return f"`{value.kind}`" if value.kind else "(see below)"
        if isinstance(value, tuple) and value and all(isinstance(v, Params) for v in value):
            return "`" + yaml.safe_dump([v.to_dict() for v in value], default_flow_style=True, sort_keys=False).strip() + "`"
    else:
        return "required"
    return f"`{value!r}`" if not isinstance(value, Params) else f"`{value.kind}`"


def _rules(f) -> str:
    rules = dict(f.metadata.get("rules", {})) if f.metadata else {}
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [f"{symbols[k]} {v}" for k, v in rules.items() if k in symbols]
    if "choices" in rules:
        parts.append("one of " + ", ".join(f"`{c}`" for c in rules["choices"]))
    unit = f.metadata.get("unit") if f.metadata else None
    if unit:
        parts.append("dimensionless" if unit == "1" else f"unit: {unit}")
    return "; ".join(parts)


def _table(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = ["| key | type | default | rule | meaning |", "|---|---|---|---|---|"]
    for f in fields(cls):
        cells = [f"`{f.name}`", _type_name(hints[f.name]), _default(f), _rules(f),
                 describe_field(cls, f.name)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines if len(lines) > 2 else ["(no keys)"]


def _sections(cls: type, title: str, seen: set, out: list):
    if cls in seen:
        return
    seen.add(cls)
    out += [f"## {title}", "", " ".join((inspect.getdoc(cls) or "").split()), ""] + _table(cls) + [""]
    for f in fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        for arg in (typing.get_args(tp) or (tp,)):
            arg = typing.get_args(arg)[0] if typing.get_origin(arg) is tuple else arg
            if isinstance(arg, type) and issubclass(arg, Params):
                if arg.is_family():
                    _family(arg, seen, out)
                else:
                    _sections(arg, f"`{f.name}`: {arg.__name__}", seen, out)


def _family(base: type, seen: set, out: list):
    if base in seen:
        return
    seen.add(base)
    default = (f" (`{base.default_kind}` when a mapping has no `type`)"
               if base.default_kind else "")
    out += [f"## {base.family} types", "",
            f"Select with `type:`{default}; known: "
            f"{', '.join(f'`{k}`' for k in sorted(base.members()))}.", ""]
    members = sorted(base.members().items())
    for kind, member in members:
        plugin = provider(member)
        title = f"### {base.family} `{kind}`" + (f" (plugin {plugin})" if plugin else "")
        out += [title, "", " ".join((inspect.getdoc(member) or "").split()), ""]
        out += _table(member) + [""]
    for _, member in members:  # the families the members' own keys select from
        for f in fields(member):
            for arg in typing.get_args(typing.get_type_hints(member)[f.name]):
                if isinstance(arg, type) and issubclass(arg, Params) and arg.is_family():
                    _family(arg, seen, out)


def config_reference() -> str:
    """Markdown reference of every key a run config accepts, installed plugins' included."""
    from devsim.runconfig import RunConfig
    out = ["# devsim config reference", "",
           "Generated by `devsim docs` from the parameter dataclasses; do not edit by hand.", ""]
    _sections(RunConfig, "Run config (top level)", set(), out)
    return "\n".join(out) + "\n"
