"""Untrusted text (queries, responses, reasons, names from datasets) made inert for ``st.markdown``.

Pure functions, no Streamlit: every page that shows dataset text goes through here, and never
through ``unsafe_allow_html`` or ``st.html``.

- :func:`plain`: a short text shown exactly as it is (every markup character escaped).
- :func:`plain_lines`: the same for several lines (line breaks kept).
- :func:`inert_markdown`: a response rendered as markdown (lists, emphasis, tables, code), with
  raw HTML escaped so it shows as text, no image ever loaded (``![alt](url)`` becomes plain text),
  inline links kept only to http(s) and mailto targets (``javascript:``, ``data:`` and the rest stop
  being links), reference definitions shown as text (so reference-style images and links are text),
  ``$`` shown as a dollar sign rather than starting LaTeX, and the text's line breaks kept.

Code (fenced blocks and inline spans) is left as written, since markdown shows it literally; but
image and unsafe-link syntax is broken inside code too, with an invisible zero-width space, so a
span this module reads as code and a markdown renderer does not can still load nothing.
(Streamlit itself shows raw HTML in markdown as text when ``unsafe_allow_html`` is off; the
escaping here does not rely on that.)
"""

from __future__ import annotations

import re

_MARKUP = set("\\`*_{}[]()<>#+-.!|~:$&")
ZWSP = "\u200b"

#: link destinations that stay links: the web and e-mail (a click, never an automatic request)
_SAFE_URL = re.compile(r"[ \t]*\n?[ \t]*<?(?:https?://|mailto:)", re.IGNORECASE)
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_DEFINITION = re.compile(r"\[(?:[^\]\\\n]|\\.){1,999}\]:")
#: a GFM table's delimiter row: in a table, cells split at "|" before code spans are found
_TABLE_RULE = re.compile(r"^ {0,3}\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


#: where a markdown renderer starts a link even with every markup character escaped (GFM's
#: "autolink literals": "scheme://", "mailto:", "xmpp:", "www.", an e-mail's "@"); a zero-width
#: space at each of these places breaks the link and is invisible
_AUTOLINK = re.compile(r"(?<=:)(?=/)|(?i:(?<=mailto:)|(?<=xmpp:)|(?<=www)(?=\.))|(?=@)")


def plain(text: object) -> str:
    """Text for markdown (captions, labels, one-line values) that shows exactly as written:
    every markup character escaped, so no link, image, HTML or formatting can come from it, and
    an invisible zero-width space inside each would-be autolink (``https://``, ``www.``, ``a@b.c``),
    so a URL or e-mail in a name stays text rather than becoming a link."""
    s = _AUTOLINK.sub(ZWSP, "" if text is None else str(text))
    return "".join("\\" + c if c in _MARKUP else c for c in s)


def plain_lines(text: object) -> str:
    """:func:`plain` for text with line breaks (each kept as a markdown hard break)."""
    lines = ("" if text is None else str(text)).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "  \n".join(plain(line) for line in lines)


def _safe_destination(text: str, at: int) -> bool:
    return _SAFE_URL.match(text, at) is not None


def _in_code(code: str) -> str:
    """Code stays as written, but cannot become an image or an unsafe link if it is not code after all."""
    out = []
    for i, c in enumerate(code):
        out.append(c)
        if c == "!" and code.startswith("[", i + 1):
            out.append(ZWSP)
        elif c == "]" and code.startswith("(", i + 1) and not _safe_destination(code, i + 2):
            out.append(ZWSP)
    return "".join(out)


def _closing_run(text: str, start: int, run: int) -> int:
    """Index of the next run of exactly ``run`` backticks at or after ``start``, or -1."""
    k = start
    while True:
        k = text.find("`" * run, k)
        if k < 0:
            return -1
        e = k
        while e < len(text) and text[e] == "`":
            e += 1
        if e - k == run:
            return k
        k = e


def _at_line_start(text: str, i: int) -> bool:
    j = text.rfind("\n", 0, i) + 1
    return i - j <= 3 and text[j:i].strip(" ") == ""


def _prose(block: str) -> str:
    """One paragraph-like block (no blank lines, no fences): inline code kept, the rest escaped."""
    out: list[str] = []
    i, n = 0, len(block)
    table = any("|" in line and _TABLE_RULE.match(line) for line in block.split("\n"))
    while i < n:
        c = block[i]
        if c == "`":
            j = i
            while j < n and block[j] == "`":
                j += 1
            close = _closing_run(block, j, j - i)
            if close >= 0 and table and "|" in block[j:close]:
                close = -1  # a "span" across table cells is no span: its backticks are text
            if close < 0:
                out.append(block[i:j])  # no matching run: literal backticks
                i = j
                continue
            out.append(block[i:j] + _in_code(block[j:close]) + block[close:close + j - i])
            i = close + j - i
            continue
        if c == "\\":
            out.append("\\\\")
        elif c == "<":
            out.append("&lt;")
        elif c == "&":
            out.append("&amp;")
        elif c == "$":
            out.append("\\$")
        elif c == "!" and block.startswith("[", i + 1):
            out.append("!\\")  # "![" -> "!\[": the image becomes its plain text
        elif c == "]" and block.startswith("(", i + 1) and not _safe_destination(block, i + 2):
            out.append("]\\")  # "](" -> "]\(": an unsafe link becomes its plain text
        elif c == "[" and _at_line_start(block, i) and _DEFINITION.match(block, i):
            out.append("\\[")  # a reference definition: shown as text, so "![alt][ref]" stays text too
        else:
            out.append(c)
        i += 1
    # keep the text's own line breaks (markdown would join the lines of a paragraph)
    return "  \n".join(line.rstrip(" ") for line in "".join(out).split("\n"))


def inert_markdown(text: object) -> str:
    """A dataset's markdown (a query, a response, a reference answer) safe for ``st.markdown``
    without ``unsafe_allow_html``: see the module docstring for what is kept and what is not."""
    if text is None:
        return ""
    src = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    out: list[str] = []
    para: list[str] = []
    fence: tuple[str, int] | None = None

    def flush() -> None:
        if para:
            out.append(_prose("\n".join(para)))
            para.clear()

    for line in src.split("\n"):
        if fence is not None:
            m = _FENCE.match(line)
            if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= fence[1] and not m.group(3).strip():
                fence = None
                out.append(line)
            else:
                out.append(_in_code(line))
            continue
        m = _FENCE.match(line)
        if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
            flush()
            fence = (m.group(2)[0], len(m.group(2)))
            out.append(m.group(1) + m.group(2) + _in_code(m.group(3)))
            continue
        if not line.strip():
            flush()
            out.append("")
            continue
        para.append(line)
    flush()
    return "\n".join(out)


def figure(value: object) -> str:
    """A rating, count or mean as people read it: whole numbers without decimals ("3", "160"), a mean
    with up to two ("2.5", "1.67"), and "not applicable" for none (issue 17: "3.00", "160.00", "None")."""
    if value is None or value != value:
        return "not applicable"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
