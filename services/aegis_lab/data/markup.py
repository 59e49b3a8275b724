"""Small readers that split documentation into titled sections: HTML, reStructuredText,
Markdown and numbered plain text. Standard library only; built for recall on real package
documentation, not for full fidelity (tables become lines, markup is dropped).

Each reader returns ``Section(title, text, level)`` in document order, where ``text`` is the
prose directly under the title, up to the next title of any level. HTML also yields entries
reached from a table of contents (``<a href="#q1">How do I ...?</a>`` → the text after the
element with ``id``/``name`` ``q1``), the layout of many older FAQs.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser

__all__ = [
    "Section",
    "clean_title",
    "html_sections",
    "markdown_sections",
    "numbered_text_sections",
    "rst_inline",
    "rst_sections",
]


@dataclass(frozen=True)
class Section:
    title: str
    text: str
    level: int


_NUMBERING = re.compile(
    r"^\s*(?:(?:Q|Question|FAQ)\s*[:.]?\s*)?"
    r"(?:[A-Z]?\d+(?:[.\-]\d+)*\s?[.):]?|\(\d+\)|[A-Z][.)]|Q\s*:)\s+",
    re.I,
)


def clean_title(title: str) -> str:
    """Whitespace collapsed, numbering (``1.2``, ``Q3:``, ``(4)``, ``S7.``) and anchor marks
    (``¶``, trailing ``#``) removed."""
    title = " ".join(title.replace("¶", " ").split()).strip()
    title = re.sub(r"\s*\{#[^}]*\}$", "", title)  # Markdown anchors: {#Q001}
    title = re.sub(r"\s*#+(?:\s*TOC)?$", "", title)
    prev = None
    while prev != title:
        prev = title
        title = _NUMBERING.sub("", title).strip()
    return title


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


# ------------------------------------------------------------------------------ HTML
_BLOCK_TAGS = {
    "p", "div", "li", "ul", "ol", "dl", "dd", "pre", "table", "tr", "br", "blockquote",
    "section", "article", "hr", "center", "form", "td", "th", "tbody", "thead", "figure",
    "figcaption", "main", "body",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "head", "nav", "footer", "header", "noscript", "svg", "button"}
_SKIP_CLASSES = {
    "sphinxsidebar", "sphinxsidebarwrapper", "related", "footer", "navigation", "navbar", "nav",
    "toc", "contents", "breadcrumbs", "wy-breadcrumbs", "headerlink", "rst-versions",
    "wy-nav-side", "bodyfooter", "copyright", "sidebar", "menu", "skip-link", "searchbox",
    "toctree-wrapper", "copiable-link", "nav-panel", "header", "mini-toc", "sectionNavigation",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _Chunker(HTMLParser):
    """Flattens HTML into chunks: ``("h", level, text)``, ``("dt", 7, text)``, ``("p", 0,
    text)``; remembers at which chunk each ``id``/``name`` appears and every ``#`` link."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[tuple[str, int, str]] = []
        self.anchors: dict[str, int] = {}
        self.links: list[tuple[str, str]] = []
        self._words: list[str] = []
        self._kind: tuple[str, int] = ("p", 0)
        self._skip: list[str] = []
        self._link: tuple[str, list[str]] | None = None

    def _flush(self) -> None:
        text = " ".join("".join(self._words).split())
        if text:
            self.chunks.append((self._kind[0], self._kind[1], text))
        self._words = []
        self._kind = ("p", 0)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if self._skip:
            if tag == self._skip[-1] and tag not in {"br", "hr"}:
                self._skip.append(tag)
            return
        if (
            tag in _SKIP_TAGS
            or _SKIP_CLASSES & set(a.get("class", "").split())
            or (a.get("role") in {"navigation", "search"})
        ):
            if tag not in {"br", "hr", "img", "input", "meta", "link"}:
                self._skip.append(tag)
            return
        if tag in _HEADINGS or tag == "dt":
            self._flush()
            self._kind = ("h", _HEADINGS[tag]) if tag in _HEADINGS else ("dt", 7)
        elif tag in _BLOCK_TAGS:
            self._flush()
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.anchors.setdefault(a[key], len(self.chunks))
        if tag == "a" and a.get("href", "").startswith("#") and len(a["href"]) > 1:
            self._link = (a["href"][1:], [])

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag == "a" and self._link is not None:
            target, words = self._link
            self.links.append((target, " ".join("".join(words).split())))
            self._link = None
        if tag in _HEADINGS or tag == "dt" or tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._words.append(data)
        if self._link is not None:
            self._link[1].append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_sections(source: str, toc_questions: bool = True) -> list[Section]:
    """Sections of an HTML page: headings (``h1``–``h6``, level 1–6) and definition terms
    (``dt``, level 7) with the paragraphs under them; with ``toc_questions``, also entries
    whose title is the text of an in-page link ending in ``?`` (level 8)."""
    parser = _Chunker()
    parser.feed(source)
    parser.close()
    chunks = parser.chunks
    starts = [i for i, (kind, _, _) in enumerate(chunks) if kind in {"h", "dt"}]
    targets: list[tuple[int, str]] = []
    if toc_questions:
        found = {
            parser.anchors[t]: text
            for t, text in parser.links
            if text.rstrip().endswith("?") and t in parser.anchors
        }
        targets = sorted(found.items())
    bounds = sorted({i for i, _ in targets} | set(starts))

    def end_of(i: int) -> int:
        later = [b for b in bounds if b > i]
        return later[0] if later else len(chunks)

    out: list[tuple[int, Section]] = []
    for i in starts:
        body = "\n".join(text for _, _, text in chunks[i + 1 : end_of(i)])
        out.append((i, Section(chunks[i][2], body, chunks[i][1])))
    seen = {_norm(clean_title(s.title)) for _, s in out}
    for i, title in targets:
        if _norm(clean_title(title)) in seen:
            continue
        body_chunks = [text for _, _, text in chunks[i : end_of(i)]]
        if body_chunks and _norm(clean_title(title)) in _norm(body_chunks[0]):
            body_chunks = body_chunks[1:]  # the question repeated above its answer
        out.append((i, Section(title, "\n".join(body_chunks), 8)))
    out.sort(key=lambda pair: pair[0])
    return [s for _, s in out]


# ------------------------------------------------------------------------------ reST
_RST_ADORN = re.compile(r"^([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_RST_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)\s*(?:<[^>`]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>`]*>`__?")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_EMPH = re.compile(r"(\*\*|\*|`)(?=\S)(.+?)(?<=\S)\1_{0,2}")
_RST_REF = re.compile(r"(?<=\w)__?\b")
_RST_SUBST = re.compile(r"\|([^|\s][^|]*)\|")


def rst_inline(text: str) -> str:
    """reST inline markup removed: roles, links, literals, emphasis, references."""
    text = _RST_ROLE.sub(r"\1", text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_LITERAL.sub(r"\1", text)
    text = _RST_EMPH.sub(r"\2", text)
    text = _RST_SUBST.sub(r"\1", text)
    return _RST_REF.sub("", text)


def _rst_body(lines: list[str]) -> str:
    out: list[str] = []
    para: list[str] = []
    skip_indent: int | None = None

    def flush() -> None:
        if para:
            out.append(" ".join(" ".join(para).split()))
            para.clear()

    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if stripped.startswith(".. "):
            flush()
            directive = stripped[3:]
            # Comments, targets, images, toctrees, options: drop with their indented body.
            # Notes, warnings, code blocks: keep the body (it is prose or code).
            keep = re.match(
                r"(?:note|warning|tip|important|hint|caution|attention|danger|seealso|"
                r"code-block|code|sourcecode|versionadded|versionchanged|deprecated|admonition)"
                r"::",
                directive,
            )
            if not keep:
                skip_indent = indent
            elif "::" in directive and directive.split("::", 1)[1].strip():
                para.append(directive.split("::", 1)[1].strip())
            continue
        if not stripped:
            flush()
            continue
        if re.match(r"^:[\w -]+:(\s|$)", stripped):  # field lists / directive options
            continue
        if _RST_ADORN.match(stripped) or re.match(r"^[+|][-=+|]*$", stripped):
            continue
        para.append(rst_inline(stripped.replace("::", ":")))
    flush()
    return "\n".join(out)


def rst_sections(source: str) -> list[Section]:
    """Sections of a reStructuredText document; levels follow the order in which the
    underline (and overline) styles first appear."""
    lines = source.replace("\r\n", "\n").split("\n")
    styles: list[tuple[str, bool]] = []
    heads: list[tuple[int, int, str, int]] = []  # (first line, body start, title, level)
    i = 0
    while i + 1 < len(lines):
        title, under = lines[i].rstrip(), lines[i + 1].rstrip()
        m = _RST_ADORN.match(under)
        over = i > 0 and _RST_ADORN.match(lines[i - 1].rstrip() or "x") is not None
        if (
            m
            and title.strip()
            and not title.startswith(" " * 4)
            and not _RST_ADORN.match(title.strip())
            and len(under) >= len(title.strip())
            and (i == 0 or not lines[i - 1].strip() or over)
        ):
            style = (m.group(1), over and lines[i - 1].strip()[:1] == m.group(1))
            if style not in styles:
                styles.append(style)
            start = i - 1 if style[1] else i
            heads.append((start, i + 2, rst_inline(title.strip()), styles.index(style) + 1))
            i += 2
            continue
        i += 1
    sections = []
    for n, (_, body_start, title, level) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        sections.append(Section(title, _rst_body(lines[body_start:end]), level))
    return sections


# ------------------------------------------------------------------------------ Markdown
_MD_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_SETEXT = re.compile(r"^(=+|-+)\s*$")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\[[^\]]*\]")
_MD_EMPH = re.compile(r"(\*\*|__|\*|_|`+)(?=\S)(.+?)(?<=\S)\1")
_MD_TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def _md_inline(text: str) -> str:
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(lambda m: m.group(1) or m.group(2), text)
    text = _MD_TAG.sub("", text)
    text = _MD_EMPH.sub(r"\2", text)
    return html.unescape(text)


def markdown_sections(source: str) -> list[Section]:
    """Sections of a Markdown document (ATX ``#`` and setext headings, code fences kept as
    text but never read as headings); a whole-line bold paragraph ending in ``?`` counts as a
    level-7 heading (a common FAQ layout)."""
    lines = source.replace("\r\n", "\n").split("\n")
    heads: list[tuple[int, int, str, int]] = []  # (title line, body start, title, level)
    fence = False
    skip_next = False
    for i, line in enumerate(lines):
        if skip_next:
            skip_next = False
            continue
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        if fence:
            continue
        m = _MD_ATX.match(line)
        if m:
            heads.append((i, i + 1, _md_inline(m.group(2)), len(m.group(1))))
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and not line.startswith((" ", "\t", "-", "*", ">", "|"))
            and _MD_SETEXT.match(nxt)
            and (i == 0 or not lines[i - 1].strip())
        ):
            heads.append((i, i + 2, _md_inline(line.strip()), 1 if nxt.startswith("=") else 2))
            skip_next = True
            continue
        bold = re.match(r"^\s*(?:[-*]\s+)?(\*\*|__)(.+?)\1\s*$", line)
        if bold and bold.group(2).rstrip().endswith("?") and (i == 0 or not lines[i - 1].strip()):
            heads.append((i, i + 1, _md_inline(bold.group(2)), 7))
    sections = []
    for n, (_, start, title, level) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        paragraphs = re.split(r"\n\s*\n", "\n".join(lines[start:end]))
        body = []
        for p in paragraphs:
            p = re.sub(r"^\s*(?:[-*+]|\d+\.)\s+", "", p, flags=re.M)
            p = re.sub(r"^\s*>\s?", "", p, flags=re.M)
            text = " ".join(_md_inline(p).split())
            if text and not re.fullmatch(r"[-*_=|: ]+", text):
                body.append(text)
        sections.append(Section(title, "\n".join(body), level))
    return sections


# ------------------------------------------------------------------------------ plain text
_NUMBERED = re.compile(r"^(\s{0,6})((?:Q\s*)?\d+(?:\.\d+)+\.?|\d+[.)])\s+(\S.*)$")
_CAPS_LINE = re.compile(r"^\s*[A-Z0-9][A-Z0-9 .,:&/'()\-]{6,}$")


def numbered_text_sections(source: str) -> list[Section]:
    """Sections of a plain-text document with numbered headings (``1.2. What is Vim?``,
    ``  3.1 How do I ...``); a heading may wrap onto up to two more lines until it ends in
    ``?``. The numbers of a table of contents repeat below: for each number, the occurrence
    with the longest text wins."""
    lines = source.replace("\r\n", "\n").split("\n")
    heads: list[tuple[int, int, str, str]] = []  # (title line, body start, number, title)
    for i, line in enumerate(lines):
        m = _NUMBERED.match(line)
        if m:
            title, j = m.group(3).strip(), i + 1
            indent = len(m.group(1)) + len(m.group(2)) + 1
            while (
                not title.endswith("?")
                and j < len(lines)
                and j < i + 3
                and lines[j].strip()
                and len(lines[j]) - len(lines[j].lstrip()) >= indent - 1
                and not _NUMBERED.match(lines[j])
            ):
                title += " " + lines[j].strip()
                j += 1
            heads.append((i, j, m.group(2).rstrip(".").lstrip("Q "), title))
        elif _CAPS_LINE.match(line) and (i == 0 or not lines[i - 1].strip()):
            heads.append((i, i + 1, "", ""))  # an all-caps section title ends an answer
    best: dict[str, Section] = {}
    order: list[str] = []
    for n, (_, body_start, number, title) in enumerate(heads):
        if not number:
            continue
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        paragraphs = re.split(r"\n\s*\n", "\n".join(lines[body_start:end]))
        body = "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
        level = number.count(".") + 1
        if number not in best:
            order.append(number)
        if number not in best or len(body) > len(best[number].text):
            best[number] = Section(" ".join(title.split()), body, level)
    return [best[n] for n in order]
