"""MkDocs hook: the CLI reference page is written from netcut's argparse parser at every build, so it never drifts
from the code (a page holding the marker below gets every command's --help in its place)."""

from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- netcut-cli-reference -->"


def cli_reference() -> str:
    """Every command's usage and options, as `netcut COMMAND --help` prints them."""
    from netcut.cli import build_parser

    parser = build_parser()
    parts = ["## netcut", "", "```text", parser.format_help().rstrip(), "```", ""]
    actions = [a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    for name, sub in actions[0].choices.items():
        parts += [f"## netcut {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the marker with the generated reference."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown
