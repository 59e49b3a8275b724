"""Documentation section title → section text, from Debian documentation packages.

Two human-written manuals: the Debian Reference (``debian-reference-en``, DocBook HTML, one
page per chapter) and the Linux kernel documentation (``linux-doc-<ver>``,
reStructuredText; the 180 MB of rendered HTML beside it is not kept). A section is a title
with the prose directly under it (up to the next title of any level). Titles that say
nothing on their own ("Introduction", "Overview", "Example", bare numbers) and titles that
occur more than once in a manual are dropped, as are FAQ files (they belong to the FAQ task)
and translations.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from aegis_lab.data.faq import read_doc_file
from aegis_lab.data.manpages import cap_text
from aegis_lab.data.markup import Section, clean_title, html_sections, rst_sections

__all__ = [
    "DOC_PACKAGES",
    "DocSection",
    "doc_files",
    "is_generic_title",
    "load_doc_sections",
    "sections_of_file",
]

LINUX_DOC = "linux-doc-6.1"
DOC_PACKAGES = ("debian-reference-en", LINUX_DOC)
# Keep only the reStructuredText sources of the kernel documentation.
DOC_KEEP = {LINUX_DOC: (f"usr/share/doc/{LINUX_DOC}/Documentation",)}

_GENERIC = {
    "introduction", "overview", "summary", "description", "example", "examples", "usage",
    "notes", "note", "references", "reference", "see also", "contents", "table of contents",
    "background", "abstract", "preface", "conclusion", "conclusions", "details", "purpose",
    "motivation", "synopsis", "options", "configuration", "installation", "requirements",
    "limitations", "todo", "to do", "known issues", "caveats", "authors", "author", "credits",
    "acknowledgements", "acknowledgments", "license", "copyright", "changelog", "history",
    "future work", "getting started", "basic usage", "further reading", "links", "resources",
    "terminology", "definitions", "glossary", "index", "api", "interface", "implementation",
    "design", "testing", "debugging", "troubleshooting", "questions", "faq", "contact",
    "general", "misc", "miscellaneous", "other", "others", "appendix", "tips", "status",
    "return value", "return values", "arguments", "parameters", "errors", "example usage",
}  # fmt: skip


@dataclass(frozen=True)
class DocSection:
    """``id`` is ``<package>:<file>#<title>``."""

    id: str
    package: str
    title: str
    text: str


def is_generic_title(title: str) -> bool:
    """True for titles that name no topic: a generic word list, numbers/punctuation only,
    fewer than two words, or "Chapter 3"/"Appendix A"-style labels."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#.\-']*", title)
    low = " ".join(title.lower().split()).strip(" .:")
    if low in _GENERIC or len(words) < 2:
        return True
    return bool(re.fullmatch(r"(?:chapter|appendix|part|section|step|table|figure)\s+\S+", low))


def doc_files(package: str, root: Path) -> list[tuple[str, Path]]:
    """``(format, path)`` of the documentation files of a package, sorted."""
    if package == "debian-reference-en":
        base = root / "usr" / "share" / "debian-reference"
        return [("html", p) for p in sorted(base.glob("*.en.html"))]
    if package.startswith("linux-doc"):
        base = root / "usr" / "share" / "doc" / package / "Documentation"
        files = sorted(base.rglob("*.rst.gz")) + sorted(base.rglob("*.rst"))
        return [
            ("rst", p)
            for p in files
            if "translations" not in p.relative_to(base).parts and "faq" not in p.name.lower()
        ]
    raise ValueError(f"no documentation layout known for {package!r}")


def sections_of_file(text: str, fmt: str) -> list[Section]:
    return html_sections(text, toc_questions=False) if fmt == "html" else rst_sections(text)


def load_doc_sections(
    roots: Iterable[tuple[str, Path]], min_words: int = 15, max_chars: int = 2000
) -> list[DocSection]:
    """Specific-titled sections with at least ``min_words`` words of text, per package;
    titles repeated within a package (ambiguous queries) are dropped."""
    out: list[DocSection] = []
    for package, root in roots:
        found: list[DocSection] = []
        files = doc_files(package, root)
        for fmt, path in tqdm(files, desc=f"sections of {package}", unit="file", leave=False):
            rel = path.relative_to(root).as_posix()
            for s in sections_of_file(read_doc_file(path), fmt):
                title = clean_title(s.title)
                if is_generic_title(title) or title.endswith("?") or len(title) > 150:
                    continue
                if len(s.text.split()) < min_words:
                    continue
                text = " ".join(s.text.split("\n"))
                found.append(
                    DocSection(
                        f"{package}:{rel}#{title}", package, title, cap_text(text, max_chars)
                    )
                )
        counts = Counter(" ".join(d.title.lower().split()) for d in found)
        out.extend(d for d in found if counts[" ".join(d.title.lower().split())] == 1)
    return out
