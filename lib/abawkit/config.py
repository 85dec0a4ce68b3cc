"""Stage configurations: one frozen dataclass per stage declares every setting once (name, type, default, help,
checks), with named presets; the command line, the notebooks' parameters cells and the pipelines derive from it.

A config is a frozen dataclass whose fields carry their help as a docstring under the field (read by tyro for
``--help``), whose ``__post_init__`` checks the values, and which may declare

- ``PRESETS: ClassVar[dict[str, dict]]``: named values of the same config (``demo``, ``gpu``), as overrides of
  the field defaults;
- ``SELECTORS: ClassVar[dict[str, dict[str, dict]]]``: names that expand into several fields before the
  explicit values apply (``algorithm: full`` sets the switches of the semi-supervised method); a selector is
  an input, never stored beside the fields it sets.

A field whose type is itself a config is *nested*: its fields are addressed by their own names, flat (the
command line says ``--tau``, a notebook ``tau = 0.9``), so two levels must not share a name.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import UserError

C = TypeVar("C")

PRESET_KEY = "preset"


class ConfigError(UserError, ValueError):
    """A setting that cannot be used: the message names it, the value and what is allowed."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=False)


def nested_fields(cls: type) -> dict[str, type]:
    """``{field name: config class}`` of the fields of ``cls`` that are configs themselves."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}


def flat_fields(cls: type) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Every setting of ``cls`` by its flat name: ``{name: (path of nested field names, type)}``."""
    hints, nested = _hints(cls), nested_fields(cls)
    out: dict[str, tuple[tuple[str, ...], Any]] = {}
    for f in dataclasses.fields(cls):
        if f.name in nested:
            for name, (path, hint) in flat_fields(nested[f.name]).items():
                if name in out:
                    raise TypeError(f"{cls.__name__}: setting {name!r} is declared at two levels")
                out[name] = ((f.name, *path), hint)
        else:
            out[f.name] = ((), hints[f.name])
    return out


def selectors(cls: type) -> dict[str, dict[str, dict[str, Any]]]:
    """The selector names of ``cls`` and of its nested configs (``{name: {choice: {field: value}}}``)."""
    out = dict(getattr(cls, "SELECTORS", {}))
    for sub in nested_fields(cls).values():
        out.update(selectors(sub))
    return out


def presets(cls: type) -> dict[str, dict[str, Any]]:
    return dict(getattr(cls, "PRESETS", {}))


def _members(hint: Any) -> tuple[Any, ...]:
    """The types a union allows (``int | None`` -> (int, NoneType)); a plain type is its own member."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _coerce(value: Any, hint: Any) -> Any:
    """YAML and papermill give lists where a tuple is declared, and 1 where 1.0 is meant; nothing else converts."""
    members = _members(hint)
    if isinstance(value, list) and any(typing.get_origin(m) is tuple for m in members):
        return tuple(value)
    if type(value) is int and float in members and int not in members:
        return float(value)
    return value


def _type_problem(name: str, value: Any, hint: Any) -> str | None:
    import typeguard

    members = _members(hint)
    wrong = isinstance(value, bool) and bool not in members  # typeguard lets True pass as an int
    if not wrong:
        try:
            typeguard.check_type(value, hint)
        except typeguard.TypeCheckError:
            wrong = True
    return f"{name}: expected {_type_text(hint)}, got {type(value).__name__} {value!r}" if wrong else None


def _type_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


def _unknown(names: list[str], known: list[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(parts)


def expand(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat field values: ``preset`` and selectors expanded first (in that order), explicit fields win."""
    values = dict(values)
    out: dict[str, Any] = {}
    name = values.pop(PRESET_KEY, None)
    if name is not None:
        table = presets(cls)
        if name not in table:
            raise ConfigError(f"{PRESET_KEY} {name!r}: {cls.__name__} has the presets {', '.join(table) or 'none'}")
        out.update(table[name])
    for sel, choices in selectors(cls).items():
        for source in (out, values):
            if sel in source:
                choice = source.pop(sel)
                if choice not in choices:
                    raise ConfigError(f"{sel} {choice!r}: expected one of {', '.join(choices)}")
                out.update(choices[choice])
    out.update(values)
    return out


def build(cls: type[C], values: Mapping[str, Any] | None = None, *, base: C | None = None) -> C:
    """A config of ``cls`` from flat ``values`` (field names, ``preset``, selectors) over ``base`` (default: the
    field defaults). Unknown names, wrong types and failed checks are one :class:`ConfigError` naming them."""
    flat = flat_fields(cls)
    values = expand(cls, values or {})
    unknown = sorted(set(values) - set(flat))
    if unknown:
        raise ConfigError(f"unknown setting(s) of {cls.__name__}: {_unknown(unknown, list(flat) + list(selectors(cls)))}")
    problems = []
    for name, value in list(values.items()):
        values[name] = value = _coerce(value, flat[name][1])
        problem = _type_problem(name, value, flat[name][1])
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError("; ".join(problems))
    try:
        return _replace(base if base is not None else cls(), values, flat)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _replace(obj: Any, values: dict[str, Any], flat: dict[str, tuple[tuple[str, ...], Any]]) -> Any:
    own = {k: v for k, v in values.items() if not flat[k][0]}
    for sub in {flat[k][0][0] for k in values if flat[k][0]}:
        inner = {k: v for k, v in values.items() if flat[k][0][:1] == (sub,)}
        sub_flat = {k: (flat[k][0][1:], flat[k][1]) for k in inner}
        own[sub] = _replace(getattr(obj, sub), inner, sub_flat)
    return dataclasses.replace(obj, **own)


def preset(cls: type[C], name: str | None = None, **overrides: Any) -> C:
    """The preset ``name`` of ``cls`` (None: the field defaults) with flat ``overrides``."""
    return build(cls, {**({PRESET_KEY: name} if name else {}), **overrides})


def flat_values(config: Any) -> dict[str, Any]:
    """``{flat name: value}`` of a config (tuples as lists, as a YAML file or a notebook would write them)."""
    out: dict[str, Any] = {}
    for name, (path, _) in flat_fields(type(config)).items():
        obj = config
        for part in path:
            obj = getattr(obj, part)
        value = getattr(obj, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """A config from its nested ``dataclasses.asdict`` form (a checkpoint or run record)."""
    nested = nested_fields(cls)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in nested and isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[key] = value
    return build(cls, flat)


def from_namespace(cls: type[C], namespace: Mapping[str, Any]) -> C:
    """The config a notebook's parameters describe: every flat field name (and selector) found in ``namespace``
    (the notebook's ``globals()``: the parameters cell and what papermill injected).

    A ``preset`` there is an error: the cell's own values (another preset's) would silently override it;
    ``abawkit run`` spells a stage's ``preset`` out into settings before the notebook starts."""
    if PRESET_KEY in namespace:
        raise ConfigError(f"{PRESET_KEY}={namespace[PRESET_KEY]!r} cannot be applied inside the notebook (its "
                          f"parameters cell sets its own values); run it with abawkit run and 'preset: "
                          f"{namespace[PRESET_KEY]}' in the stage's parameters, or pass the settings themselves")
    names = set(flat_fields(cls)) | set(selectors(cls))
    return build(cls, {k: v for k, v in namespace.items() if k in names})


def describe(config: Any) -> "Any":
    """The settings of a config as a one-column table (pandas), the way a notebook shows what is in effect."""
    import pandas as pd

    values = flat_values(config)
    return pd.DataFrame({"value": [repr(v) if isinstance(v, str) else v for v in values.values()]},
                        index=pd.Index(list(values), name=type(config).__name__)).astype(object)


def cli(cls: type[C], argv: list[str] | None, *, prog: str, epilog: str | None = None) -> C:
    """Parse a command line into a config of ``cls``: the options are generated from its fields by tyro
    (flat names, ``--name-with-dashes``; booleans as ``--x/--no-x``), their defaults shown in ``--help``.

    Read first: ``--preset NAME`` (named values of the config), ``--config FILE`` (a YAML mapping of the same
    names with underscores) and each selector (``--algorithm full``); the options given after them win.
    """
    import argparse

    import tyro

    pre = argparse.ArgumentParser(add_help=False)
    extra = []
    if presets(cls):
        pre.add_argument("--preset", choices=list(presets(cls)))
        extra.append(f"--preset {{{','.join(presets(cls))}}}: named settings of this stage "
                     f"({'; '.join(f'{k}: ' + ', '.join(f'{n}={v}' for n, v in p.items()) for k, p in presets(cls).items())})")
    pre.add_argument("--config", metavar="FILE")
    extra.append("--config FILE: a YAML mapping of these settings (the names below with underscores, e.g. 'seed: 1')")
    for name, choices in selectors(cls).items():
        pre.add_argument(f"--{name.replace('_', '-')}", dest=name, choices=list(choices))
        extra.append(f"--{name.replace('_', '-')} {{{','.join(choices)}}}: sets "
                     + "; ".join(f"{k}: " + ", ".join(f"{n}={v}" for n, v in c.items()) for k, c in choices.items()))
    known, rest = pre.parse_known_args(argv)
    values: dict[str, Any] = {}
    if known.config:
        from .readers import read_yaml_mapping

        data = read_yaml_mapping(known.config, "a --config file: a YAML mapping of setting: value",
                                 f"see {prog} --help for the settings", allow_empty=True)
        for key, value in data.items():  # a nested section (semisup: {tau: 0.9}) is flattened
            values.update(value if key in nested_fields(cls) and isinstance(value, dict) else {key: value})
    for key in (PRESET_KEY, *selectors(cls)):
        if getattr(known, key, None) is not None:
            values[key] = getattr(known, key)
    for name, option in _append_options(cls).items():
        if any(a == option or a.startswith(option + "=") for a in rest):
            values[name] = ()  # a repeatable option given on the command line replaces the default, not extends it
    base = build(cls, values)
    description = (inspect.cleandoc(cls.__doc__ or "") + "\n\nRead before the options below:\n  " + "\n  ".join(extra)
                   + (f"\n\n{epilog}" if epilog else ""))
    try:
        return tyro.cli(cls, args=rest, default=base, prog=prog, description=description,
                        config=(tyro.conf.OmitArgPrefixes, tyro.conf.OmitSubcommandPrefixes))
    except (TypeError, ValueError) as exc:  # a check of __post_init__ on the combined values
        raise ConfigError(str(exc)) from None


def _append_options(cls: type) -> dict[str, str]:
    """``{flat name: --option}`` of the repeatable (append) options of ``cls`` and its nested configs."""
    import tyro

    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.name in nested_fields(cls):
            out.update(_append_options(nested_fields(cls)[f.name]))
            continue
        meta = getattr(hints[f.name], "__metadata__", ())
        if any(m is tyro.conf.UseAppendAction for m in meta):
            names = [m.name for m in meta if getattr(m, "name", None)]
            out[f.name] = "--" + (names[0] if names else f.name).replace("_", "-")
    return out
