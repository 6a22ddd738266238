"""The small Markdown subset of the model cards as HTML: headings, paragraphs, ``*``/``-``
bullets, pipe tables, inline code and bold. Every piece of text is HTML-escaped first, so a card
cannot inject markup into the report."""
from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_BULLET = re.compile(r"^\s*[*-]\s+")


def _inline(text: str) -> str:
    parts = _CODE.split(text)            # odd indices: code spans, left as they are
    out = []
    for i, p in enumerate(parts):
        p = html.escape(p)
        out.append(f"<code>{p}</code>" if i % 2 else _BOLD.sub(r"<strong>\1</strong>", p))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def to_html(md: str, *, shift: int = 2) -> str:
    """Markdown of a model card -> HTML; headings move down ``shift`` levels (# -> <h3>)."""
    out: list[str] = []
    para: list[str] = []
    lines = md.splitlines()
    i = 0

    def flush():
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if not line.strip():
            flush()
        elif m:
            flush()
            level = min(6, len(m.group(1)) + shift)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif _BULLET.match(line):
            flush()
            items = []
            while i < len(lines) and _BULLET.match(lines[i]):
                items.append(f"<li>{_inline(_BULLET.sub('', lines[i]))}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|?[\s:|-]+\|?\s*$", lines[i + 1]) \
                and "-" in lines[i + 1]:
            flush()
            head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(line))
            i += 2
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
            continue
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)
