"""The pages' scripts put what the server sends into the page as text, never as markup."""

from __future__ import annotations

import re
from pathlib import Path

STATIC_JS = Path(__file__).resolve().parent.parent / "static" / "js"
ASSIGNMENT = re.compile(r"\.innerHTML\s*=\s*")
# What an innerHTML template may interpolate: an encoded URL part, a loop index, or a choice
# between two fixed pieces of markup.
ALLOWED = re.compile(r"encodeURIComponent\(\w+\)|[qo]i|canAsk \?[^$]*", re.S)


def template_at(text: str, i: int) -> tuple[str, list[str]]:
    """The template literal that starts at ``text[i]`` (a backtick) and its top-level
    ``${...}`` expressions (nested templates inside them included)."""
    assert text[i] == "`"
    exprs: list[str] = []
    j = i + 1
    while text[j] != "`":
        if text[j] == "\\":
            j += 2
        elif text.startswith("${", j):
            start, depth, j = j + 2, 1, j + 2
            while depth:
                if text[j] == "`":
                    j += len(template_at(text, j)[0])  # a template inside the expression
                    continue
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            exprs.append(text[start : j - 1].strip())
        else:
            j += 1
    return text[i : j + 1], exprs


def test_no_script_puts_server_data_into_inner_html():
    found = []
    for path in sorted(STATIC_JS.glob("*.js")):
        text = path.read_text(encoding="utf-8")
        for match in ASSIGNMENT.finditer(text):
            i = match.end()
            if text[i] == "`":
                exprs = template_at(text, i)[1]
                found += [(path.name, e) for e in exprs if not ALLOWED.fullmatch(e)]
            elif not text.startswith(('""', "''"), i):  # clearing it is fine
                found.append((path.name, text[i : text.index(";", i)]))
    assert not found, found
