"""``devsim docs``: the config reference generated from the schema."""
from __future__ import annotations

from pathlib import Path


def cmd_docs(args) -> int:
    from devsim.docs import config_reference
    text = config_reference()
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def register(sub) -> None:
    sp = sub.add_parser("docs", help="print the config reference generated from the schema")
    sp.add_argument("--out", help="write to this file instead")
    sp.set_defaults(handler=cmd_docs)
