"""The daemon's configuration as TOML text: the commented example (``spectro-edge config --example``), printed from
the schema in :mod:`edge.config_sections` so it can never drift from what :func:`edge.config.load_config` accepts,
and :func:`render_config`, the one writer of a configuration given as a mapping (the tests', the benchmarks' and the
demo's daemons are configured through it).

>>> config = {"log_level": "INFO", "device": {"site": "a"}, "mqtt": {"port": 1883, "tls": {"enabled": True}}}
>>> print(render_config(config), end="")
log_level = "INFO"
<BLANKLINE>
[device]
site = "a"
<BLANKLINE>
[mqtt]
port = 1883
<BLANKLINE>
[mqtt.tls]
enabled = true
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from edge.config_sections import REQUIRED, SECTIONS, field_hints, fmt_choices, toml_value

__all__ = ["example_config", "render_config"]

_EXAMPLE_WIDTH = 100


def _array_of_tables(tp: Any) -> type | None:
    """The element class of a ``tuple[SomeConfig, ...]`` field (an array of tables), else None."""
    args = getattr(tp, "__args__", ())
    if getattr(tp, "__origin__", None) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]  # type: ignore[return-value]
    return None


def _example_table(cls: type, name: str, lines: list[str]) -> None:
    doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
    lines += ["", f"# {doc}", f"[{name}]"]
    nested: list[tuple[str, type]] = []
    hints = field_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.append((f.name, tp))  # type: ignore[arg-type]  # is_dataclass narrows to an instance or a class
            continue
        meta = f.metadata
        comment = meta.get("doc", "").replace("``", "")
        if meta.get("choices"):
            comment += f" ({fmt_choices(meta['choices'])})"
        example = meta.get("example", REQUIRED)
        if example is not REQUIRED and f.default not in (dataclasses.MISSING, None) and example != f.default:
            comment += f" (default: {toml_value(f.default)})"  # the value shown is a suggestion, not the default
        lines += ["# " + line for line in textwrap.wrap(comment, width=_EXAMPLE_WIDTH - 2)]
        elem = _array_of_tables(tp)
        if elem is not None and f.default == ():  # printed as `x = []` it could not take a [[name.x]] table
            lines.append(f"# [[{name}.{f.name}]]")
            for g in dataclasses.fields(elem):
                shown = g.metadata.get("example", REQUIRED)
                shown = g.default if shown is REQUIRED else shown
                lines.append(f"# {g.name} = {'...' if shown in (REQUIRED, dataclasses.MISSING) else toml_value(shown)}")
            continue
        if f.default is dataclasses.MISSING and example is REQUIRED:  # pragma: no cover - schema guard
            raise TypeError(f"required field {name}.{f.name} needs an example")
        if f.default is None:  # optional and unset: show it commented out, with an example when there is one
            shown = toml_value(example) if example is not REQUIRED else "..."
            lines.append(f"# {f.name} = {shown}")
        else:
            value = example if example is not REQUIRED else f.default
            lines.append(f"{f.name} = {toml_value(value)}")
    for sub, tp in nested:
        _example_table(tp, f"{name}.{sub}", lines)


def example_config() -> str:
    """Return a commented example configuration in TOML that :func:`load_config` accepts as it is.

    Every key appears with its documentation; optional keys without a default appear commented out.
    """
    lines = [
        "# spectrolite edge daemon configuration (spectro-edge run --config FILE)",
        "# Any key can be overridden from the environment: SPECTROLITE__<SECTION>__<KEY>=value,",
        "# e.g. SPECTROLITE__MQTT__HOST=broker.plant.local or SPECTROLITE__MQTT__TLS__ENABLED=true; an empty",
        "# value unsets an optional key. Overrides are read at start only (a reload keeps them).",
        "# Relative paths are resolved against the directory of this file.",
        "#",
        "# Security (docs/security.md). As printed, this file is as safe as it can be without the files only you",
        "# can make: MQTT uses TLS, and commands are off; turned on (commands.enabled = true) every command needs",
        "# an HMAC made with the key in commands.hmac_key_path. Create that key with",
        "#     spectro-edge keys hmac --out /etc/spectrolite/hmac.key",
        "# and sign commands with `spectro-edge sign-command` (or edge.commands.sign_command, docs/mqtt.md).",
        "# Until the following are set, the daemon names them in a WARNING at start and in its retained status",
        "# (security: [...]):",
        "#   mqtt_anonymous    set mqtt.username and mqtt.password_file: one broker account per device (docs/mqtt.md)",
        "#   bundles_unsigned  set bundle.public_key_path: `spectro-train keygen DIR` (in the lab) makes the key pair;",
        "#                     sign bundles with `spectro-train sign BUNDLE --key DIR/spectrolite.key.pem`",
        "# commands.require_auth = false accepts unsigned commands: test benches only (commands_unauthenticated).",
        "",
        "# logging level (" + fmt_choices(("DEBUG", "INFO", "WARNING", "ERROR")) + ")",
        'log_level = "INFO"',
    ]
    for name, cls in SECTIONS.items():
        _example_table(cls, name, lines)
    return "\n".join(lines) + "\n"


_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY_RE.fullmatch(name) else toml_value(name)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _render_table(table: Mapping[str, Any], name: str, lines: list[str], header: str) -> None:
    if header:
        lines += ["", header] if lines else [header]
    subtables: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_table_array(value):
            subtables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {toml_value(value)}")
    for key, value in subtables:
        path = f"{name}.{_key(key)}" if name else _key(key)
        if isinstance(value, Mapping):
            _render_table(value, path, lines, f"[{path}]")
        else:
            for item in value:
                _render_table(item, path, lines, f"[[{path}]]")


def render_config(config: Mapping[str, Any], *, comment: str = "") -> str:
    """``config`` as TOML text: its top-level keys (``log_level``) first, then each table (``{"mqtt": {...}}``) as
    ``[mqtt]``, a table inside one as ``[mqtt.tls]``, a list of tables as ``[[control.standards]]``; values as the
    example writes them (:func:`~edge.config_sections.toml_value`), keys in the order given.

    Parameters
    ----------
    config : mapping
        Keys and tables as :func:`edge.config.parse_config` takes them (this renders, it does not check).
    comment : str, optional
        Lines written first, each as a ``#`` comment.
    """
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    _render_table(config, "", lines, "")
    return "\n".join(lines) + "\n"
