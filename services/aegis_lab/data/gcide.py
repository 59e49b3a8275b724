"""GCIDE (Debian ``dict-gcide``): dictionary senses with their illustrative quotations.

The dictd file (``usr/share/dictd/gcide.dict.dz``, gzip; ``gcide.index`` gives each
headword's base64 offset and length) holds the rendered 1913 Webster entries: a header line
(``Abandon \\A*ban"don\\, v. t. [etymology ...]``), numbered senses (``   2. To give up
...``), and quotations indented twelve spaces, ending in ``--Author.``::

       2. To give up absolutely; to forsake entirely; ...
          [1913 Webster]

                Hope was overthrown, yet could not be abandoned.
                                                      --I. Taylor.

A quotation belongs to the sense above it; notes, synonyms, usage paragraphs and run-in
phrases (``{Coal tar} ...``) end a sense. GPL-3+ data: built at run time into the cache,
never committed.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aegis_lab.data.debian import debian_package_dir

__all__ = [
    "PACKAGE",
    "Sense",
    "gcide_dir",
    "load_senses",
    "parse_block",
    "parse_dictd",
    "read_index",
]

PACKAGE = "dict-gcide"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SENSE = re.compile(r"^   (\d+)\.\s+(.*)$")
_SOURCE_TAG = re.compile(r"\[(?:\d{4} Webster|PJC|WordNet[^\]]*|Webster \d{4}[^\]]*|[A-Z]{2,4})\]")
_CITATION = re.compile(r"\s*--\s*[A-Z][^.]*(?:\.[^.]*){0,3}\.?\s*$")


@dataclass
class Sense:
    """One numbered (or the only) sense of a headword block."""

    headword: str
    number: int
    definition: str
    quotations: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.headword}#{self.number}"


def _b64(value: str) -> int:
    n = 0
    for ch in value:
        n = n * 64 + _B64.index(ch)
    return n


def read_index(text: str) -> list[tuple[str, int, int]]:
    """``(headword, offset, length)`` rows of a dictd ``.index`` file."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and not parts[0].startswith("00-"):
            rows.append((parts[0], _b64(parts[1]), _b64(parts[2])))
    return rows


def _clean(text: str) -> str:
    text = _SOURCE_TAG.sub(" ", text)
    text = text.replace("{", "").replace("}", "")
    return " ".join(text.split())


def _header_end(lines: list[str]) -> int:
    """Index of the first definition line of a block's first paragraph (after the header
    line and any etymology brackets continued on the next lines)."""
    depth = 0
    for i, line in enumerate(lines):
        depth += line.count("[") - line.count("]")
        if i > 0 and _SENSE.match(line):
            return i
        if depth <= 0 and (i == 0 or line.rstrip().endswith("]")):
            return i + 1
    return len(lines)


def _quotation(paragraph: list[str]) -> str:
    text = " ".join(line.strip() for line in paragraph if not _SOURCE_TAG.fullmatch(line.strip()))
    text = _CITATION.sub("", text)
    return _clean(text)


def parse_block(block: str) -> list[Sense]:
    """Senses (with quotations) of one headword block, i.e. one dictd entry's text, which may
    hold several homographs (each starts with an unindented header line)."""
    senses: list[Sense] = []
    homographs = re.split(r"\n(?=\S)", block.strip("\n"))
    for homograph in homographs:
        lines = homograph.split("\n")
        head = lines[0].split("\\")[0].strip()
        if not head or head.startswith("00-"):
            continue
        paragraphs: list[list[str]] = [[]]
        for line in lines:
            if line.strip():
                paragraphs[-1].append(line)
            elif paragraphs[-1]:
                paragraphs.append([])
        current: Sense | None = None
        first = True
        base = len([s for s in senses if s.headword == head])
        for para in paragraphs:
            if not para:
                continue
            if first:
                first = False
                body = para[_header_end(para) :]
                if not body:
                    continue
                para = body
            indent = len(para[0]) - len(para[0].lstrip())
            stripped = para[0].strip()
            if indent >= 10:  # a quotation paragraph
                if current is not None:
                    quote = _quotation(para)
                    if quote:
                        current.quotations.append(quote)
                continue
            # A paragraph may start unnumbered (single sense) and hold numbered senses below.
            chunks: list[tuple[int | None, list[str]]] = []
            for line in para:
                m = _SENSE.match(line)
                if m:
                    chunks.append((int(m.group(1)), [m.group(2)]))
                elif chunks:
                    chunks[-1][1].append(line.strip())
                else:
                    chunks.append((None, [line.strip()]))
            current = None
            for number, text_lines in chunks:
                if number is None and (
                    indent != 3 or stripped.startswith(("{", "Syn:", "Note:", "Usage:", "["))
                ):
                    continue  # run-in phrase, synonyms, notes: not a sense of the headword
                definition = _CITATION.sub("", _clean(" ".join(text_lines)))
                if not definition:
                    continue
                current = Sense(head, base + (number or 1), definition)
                senses.append(current)
    return senses


def parse_dictd(index_text: str, data: bytes) -> Iterator[Sense]:
    """All senses of a dictd dictionary, in index order; blocks shared by several index rows
    are parsed once."""
    seen: set[int] = set()
    for _, offset, length in read_index(index_text):
        if offset in seen:
            continue
        seen.add(offset)
        block = data[offset : offset + length].decode("utf-8", errors="replace")
        yield from parse_block(block)


def gcide_dir() -> Path:
    """``usr/share/dictd`` of the cached ``dict-gcide`` unpack."""
    return debian_package_dir(PACKAGE) / "usr" / "share" / "dictd"


def load_senses(directory: Path | None = None) -> list[Sense]:
    """Every GCIDE sense (with or without quotations)."""
    directory = Path(directory) if directory is not None else gcide_dir()
    index = (directory / "gcide.index").read_text(encoding="utf-8", errors="replace")
    with gzip.open(directory / "gcide.dict.dz") as fh:
        data = fh.read()
    return list(parse_dictd(index, data))
