"""``devsim presets``: every device preset a config can name, where it was found, and
the source it cites."""
from __future__ import annotations

import json
from pathlib import Path


def cmd_presets(args) -> int:
    from devsim.config import preset_catalog
    catalog = preset_catalog(Path(args.dir))
    if args.json:
        print(json.dumps([{"name": p.name, "type": p.kind, "origin": p.origin,
                           "file": str(p.file), "source": p.source, "shadowed": p.shadowed}
                          for p in catalog], indent=2))
        return 0
    if not catalog:
        print("no presets found")
        return 0
    width = max(len(p.name) for p in catalog)
    kinds = max(len(p.kind) for p in catalog)
    for p in catalog:
        note = " (shadowed by the one above)" if p.shadowed else ""
        print(f"{p.name:<{width}}  {p.kind:<{kinds}}  {p.origin}: {p.file}{note}")
        print(f"{'':<{width}}  {'':<{kinds}}  {p.source}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("presets", help="list the device presets a config can name "
                                        "(preset: NAME), with their sources")
    sp.add_argument("--dir", default=".",
                    help="the config's folder, whose presets/ is searched first (default: .)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(handler=cmd_presets)
