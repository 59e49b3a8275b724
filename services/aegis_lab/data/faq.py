"""Human-written FAQs from Debian packages: question heading → its answer.

People phrase these questions ("How do I make pkg-config find my libraries?"), so they are
the suite's closest stand-in for real user queries. Each source is one file of one Debian
package in a known layout (HTML, reStructuredText, Markdown, numbered plain text, or a man
page); ``markup`` splits it into titled sections and every section whose cleaned title is a
question becomes an entry. The set was surveyed from the archive's ``Contents`` index
(files named ``*faq*``) and kept where the reader recovers most entries.

Reserved for independent checks and never read here: perlfaq (``perl-doc``), the Python FAQ
(Python documentation packages) and the Debian FAQ (``debian-faq``, ``doc-debian``); see
``aegis_lab.evaluation.suite.RESERVED_PACKAGES``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from aegis_lab.data.manpages import cap_text, roff_blocks
from aegis_lab.data.markup import (
    Section,
    clean_title,
    html_sections,
    markdown_sections,
    numbered_text_sections,
    rst_sections,
)

__all__ = [
    "FAQ_SOURCES",
    "FaqEntry",
    "FaqSource",
    "faq_entries",
    "faq_packages",
    "is_question",
    "load_faqs",
    "read_doc_file",
    "roff_faq_sections",
]


@dataclass(frozen=True)
class FaqSource:
    """One FAQ file: ``path`` is relative to the unpacked package root."""

    package: str
    path: str
    format: str  # html | rst | md | text | roff | roff-para


_EMSCRIPTEN = "usr/share/doc/emscripten-doc"
FAQ_SOURCES: tuple[FaqSource, ...] = (
    FaqSource("r-doc-html", "usr/share/R/doc/manual/R-FAQ.html", "html"),
    FaqSource("apt-listbugs", "usr/share/doc/apt-listbugs/FAQ.md.gz", "md"),
    FaqSource("bogofilter-common", "usr/share/doc/bogofilter-common/bogofilter-faq.html", "html"),
    FaqSource("bogofilter-common", "usr/share/doc/bogofilter-common/bogotune-faq.html", "html"),
    FaqSource("borgbackup-doc", "usr/share/doc/borgbackup/html/faq.html", "html"),
    FaqSource("charliecloud-doc", "usr/share/doc/charliecloud/html/faq.html", "html"),
    FaqSource("chrony", "usr/share/doc/chrony/FAQ.gz", "text"),
    FaqSource("copyq-doc", "usr/share/doc/copyq/html/faq.html", "html"),
    FaqSource("cryptsetup", "usr/share/doc/cryptsetup/FAQ.md.gz", "md"),
    FaqSource("docutils-doc", "usr/share/doc/docutils-doc/FAQ.html", "html"),
    FaqSource("emscripten-doc", f"{_EMSCRIPTEN}/html/docs/getting_started/FAQ.html", "html"),
    FaqSource("fetchmail", "usr/share/doc/fetchmail/fetchmail-FAQ.html", "html"),
    FaqSource("ffmpeg-doc", "usr/share/doc/ffmpeg/manual/faq.html", "html"),
    FaqSource("getmail6", "usr/share/doc/getmail6/faq.html", "html"),
    FaqSource("gettext-doc", "usr/share/doc/gettext/FAQ.html", "html"),
    FaqSource("git-man", "usr/share/man/man7/gitfaq.7.gz", "roff-para"),
    FaqSource("irssi", "usr/share/doc/irssi/faq.html", "html"),
    FaqSource("kitty-doc", "usr/share/doc/kitty/html/faq.html", "html"),
    FaqSource("libcurl4-doc", "usr/share/doc/libcurl4/FAQ.gz", "text"),
    FaqSource("libguestfs0", "usr/share/man/man1/guestfs-faq.1.gz", "roff"),
    FaqSource("libjs-mathjax-doc", "usr/share/doc/libjs-mathjax-doc/html/misc/faq.html", "html"),
    FaqSource("libsndfile1-dev", "usr/share/doc/libsndfile1-dev/markdown/FAQ.md.gz", "md"),
    FaqSource("makepp", "usr/share/doc/makepp/makepp_faq.html", "html"),
    FaqSource("mdadm", "usr/share/doc/mdadm/FAQ.gz", "rst"),
    FaqSource("mesa-common-dev", "usr/share/doc/mesa-common-dev/faq.rst.gz", "rst"),
    FaqSource("nano", "usr/share/doc/nano/faq.html", "html"),
    FaqSource("pelican-doc", "usr/share/doc/pelican/html/faq.html", "html"),
    FaqSource("puppetdb-doc", "usr/share/doc/puppetdb/puppetdb-faq.markdown.gz", "md"),
    FaqSource("pylint-doc", "usr/share/doc/pylint/html/faq.html", "html"),
    FaqSource("schroot", "usr/share/man/man7/schroot-faq.7.gz", "roff"),
    FaqSource("sendmail-doc", "usr/share/doc/sendmail-doc/faq.txt.gz", "text"),
    FaqSource("slurm-wlm-doc", "usr/share/doc/slurm-wlm/html/faq.html", "html"),
    FaqSource("sqlite3-doc", "usr/share/doc/sqlite3/faq.html", "html"),
    FaqSource("supervisor-doc", "usr/share/doc/supervisor/html/faq.html", "html"),
    FaqSource("universal-ctags", "usr/share/man/man7/ctags-universal-faq.7.gz", "roff"),
    FaqSource("vim-doc", "usr/share/doc/vim/FAQ.gz", "text"),
    FaqSource("weechat-doc", "usr/share/doc/weechat-doc/html/weechat_faq.en.html", "html"),
    FaqSource("xterm", "usr/share/doc/xterm/xterm.faq.html", "html"),
    FaqSource("zlib1g-dev", "usr/share/doc/zlib1g-dev/FAQ.gz", "text"),
    *(
        FaqSource("zsh-doc", f"usr/share/doc/zsh-common/html/FAQ0{i}.html", "html")
        for i in range(1, 7)
    ),
)  # fmt: skip


@dataclass(frozen=True)
class FaqEntry:
    """``id`` is ``<package>:<file name>#<n>`` (n-th entry of that file)."""

    id: str
    package: str
    question: str
    answer: str


def read_doc_file(path: Path) -> str:
    """A documentation file (``.gz`` or plain), decoded leniently."""
    data = Path(path).read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def roff_faq_sections(source: str, paragraph_questions: bool = False) -> list[Section]:
    """FAQ sections of a man page: ``.SS``/``.TP`` headings, and with
    ``paragraph_questions`` also one-line paragraphs ending in ``?`` (``gitfaq(7)``)."""
    blocks = roff_blocks(source)
    starts = [
        i
        for i, b in enumerate(blocks)
        if b.heading or (paragraph_questions and b.text.endswith("?") and len(b.text) < 200)
    ]
    sections = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(blocks)
        body = [b.text for b in blocks[i + 1 : end] if b.section == blocks[i].section]
        sections.append(Section(blocks[i].text, "\n".join(body), 2))
    return sections


def _sections(text: str, fmt: str) -> list[Section]:
    if fmt == "html":
        return html_sections(text)
    if fmt == "rst":
        return rst_sections(text)
    if fmt == "md":
        return markdown_sections(text)
    if fmt == "text":
        return numbered_text_sections(text)
    if fmt in {"roff", "roff-para"}:
        return roff_faq_sections(text, paragraph_questions=fmt == "roff-para")
    raise ValueError(f"unknown FAQ format {fmt!r}")


def is_question(title: str) -> bool:
    """A cleaned title that reads as a question: ends in ``?``, 3 to 40 words."""
    return title.endswith("?") and 3 <= len(title.split()) <= 40


def _merge_q_a(sections: list[Section]) -> list[Section]:
    """``dt`` pairs titled ``Q``/``A`` (question in the first body) become one section."""
    out: list[Section] = []
    i = 0
    while i < len(sections):
        s = sections[i]
        nxt = sections[i + 1] if i + 1 < len(sections) else None
        if (
            s.title.strip(" :.").lower() in {"q", "question"}
            and nxt is not None
            and nxt.title.strip(" :.").lower() in {"a", "answer"}
        ):
            out.append(Section(s.text.replace("\n", " "), nxt.text, s.level))
            i += 2
            continue
        out.append(s)
        i += 1
    return out


def faq_entries(
    text: str, fmt: str, key: str, package: str = "", min_answer_words: int = 12
) -> list[FaqEntry]:
    """Question → answer entries of one FAQ file (answers capped at 2,000 characters)."""
    entries: list[FaqEntry] = []
    seen: set[str] = set()
    for section in _merge_q_a(_sections(text, fmt)):
        question = clean_title(section.title)
        answer = " ".join(section.text.split("\n")).strip()
        answer = re.sub(r"^(?:A|Answer)\s*[:.]\s*", "", answer)
        if not is_question(question) or len(answer.split()) < min_answer_words:
            continue
        norm = question.lower()
        if norm in seen:
            continue
        seen.add(norm)
        entries.append(FaqEntry(f"{key}#{len(entries)}", package, question, cap_text(answer)))
    return entries


def faq_packages(sources: Iterable[FaqSource] = FAQ_SOURCES) -> list[str]:
    return list(dict.fromkeys(s.package for s in sources))


def load_faqs(
    roots: dict[str, Path], sources: Iterable[FaqSource] = FAQ_SOURCES
) -> Iterator[FaqEntry]:
    """Entries of every source whose package root is in ``roots`` (missing files skipped)."""
    for src in tqdm(list(sources), desc="FAQ files", unit="file", leave=False):
        if src.package not in roots:
            continue
        path = roots[src.package] / src.path
        if not path.is_file():
            continue
        key = f"{src.package}:{Path(src.path).name}"
        yield from faq_entries(read_doc_file(path), src.format, key, src.package)
