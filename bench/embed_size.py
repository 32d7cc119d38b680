"""How many bytes a visitor downloads for the chat widget: ``widget/embed.js`` raw, gzipped (what
``GET /widget/v1/embed.js`` sends to browsers that accept gzip), and minified + gzipped.

Minification is a conservative, line-based strip that cannot change what the code means for
this file: drop lines that are only a ``//`` comment, leading indentation and blank lines (the
script keeps its CSS and markup in quoted strings, never in multi-line template literals). When
``rjsmin`` happens to be installed, its output is measured too. Budget: 30 KB minified + gzipped.

    .venv/bin/python bench/embed_size.py [path/to/embed.js]
"""

import gzip
import importlib
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_BYTES = 30 * 1024
_COMMENT_LINE = re.compile(r"^\s*//")


def strip_lines(source: str) -> str:
    """Whitespace-and-comment stripping, one line at a time."""
    kept = (line.strip() for line in source.splitlines() if not _COMMENT_LINE.match(line))
    return "\n".join(line for line in kept if line)


def gzipped_size(text: str) -> int:
    return len(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "widget" / "embed.js"
    source = path.read_text()
    stripped = strip_lines(source)
    sizes: dict[str, int | None] = {
        "raw": len(source.encode()),
        "raw_gzip": gzipped_size(source),
        "stripped": len(stripped.encode()),
        "stripped_gzip": gzipped_size(stripped),
        "rjsmin_gzip": None,
    }
    try:
        rjsmin = importlib.import_module("rjsmin")
        sizes["rjsmin_gzip"] = gzipped_size(rjsmin.jsmin(source))
    except ImportError:
        pass
    for name, size in sizes.items():
        shown = "n/a (rjsmin not installed)" if size is None else f"{size:>7,} bytes"
        print(f"{name:<14} {shown}")
    smallest = min(size for size in sizes.values() if size is not None)
    ratio = smallest / BUDGET_BYTES
    print(f"budget         {BUDGET_BYTES:>7,} bytes (minified + gzipped); smallest is {ratio:.0%} of it")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"embed_size-{stamp}.json").write_text(json.dumps({"file": str(path), **sizes}, indent=2))
    if smallest > BUDGET_BYTES:
        sys.exit("embed.js is over its size budget")


if __name__ == "__main__":
    main()
