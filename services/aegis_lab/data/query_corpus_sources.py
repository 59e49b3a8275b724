"""Parsers of the query corpus's sources: dictd dictionaries, man pages, Debian package lists,
State of the Union / Moby Dick (npm), fortunes.

Each parser works on files (or text) only and yields small records; fetching lives in
``query_corpus`` (through ``data.debian`` / ``data.npm``) so tests can feed hand-written
samples. Every record carries ``held_keys``: the (held-out source kind, id) pairs under which
the evaluation suite may hold the item out (``suite.held_out_sources()``), in every id form
the suite might use, so an item is skipped if any of them is held out.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aegis_lab.data.query_corpus_text import clean_text, mostly_text, sentences, short_pieces

__all__ = [
    "RESERVED_MAN_PREFIXES",
    "RESERVED_PACKAGES",
    "DebPackage",
    "Entry",
    "ManPage",
    "ProseDoc",
    "debian_packages",
    "dictd_blocks",
    "is_reserved_package",
    "parse_debian_packages",
    "parse_debian_translations",
    "parse_foldoc_block",
    "parse_fortune_file",
    "parse_gcide_block",
    "parse_jargon_block",
    "parse_man_page",
    "parse_vera_block",
    "prose_sentences",
    "read_dictd",
    "read_fortunes",
    "read_man_pages",
    "read_moby_dick",
    "read_sotu",
]

# Kept for independent checks: never read, never fetched, never trained on.
RESERVED_PACKAGES = frozenset({"perl-doc", "perl-doc-html", "debian-faq", "doc-debian"})
_RESERVED_PATTERNS = (re.compile(r"^python[0-9.]*-doc$"), re.compile(r"^debian-faq(-.*)?$"))
RESERVED_MAN_PREFIXES = ("perlfaq",)
# FAQ pages (gitfaq(7), guestfs-faq(1), ...) are FAQ sources of the evaluation suite.
_FAQ_PAGE = re.compile(r"faq", re.I)


def is_reserved_package(name: str) -> bool:
    """perlfaq (``perl-doc``), the Python docs/FAQ and the Debian FAQ: never used."""
    return name in RESERVED_PACKAGES or any(p.match(name) for p in _RESERVED_PATTERNS)


# --------------------------------------------------------------------------------- records
@dataclass
class Entry:
    """A dictionary entry: a term and what the dictionary says about it."""

    source: str  # wordnet | gcide | foldoc | jargon | vera
    id: str
    term: str
    pos: str = ""  # n v a r (WordNet letters) or "" when unknown
    definitions: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # usage examples, quotations
    notes: list[str] = field(default_factory=list)  # further prose sentences
    synonyms: list[str] = field(default_factory=list)
    held_keys: tuple[tuple[str, str], ...] = ()


@dataclass
class ManPage:
    package: str
    name: str
    section: str
    names: list[str]
    summary: str  # the NAME one-liner after "\-"
    description: list[str]  # DESCRIPTION paragraphs, plain text

    @property
    def id(self) -> str:
        return f"{self.name}.{self.section}"

    @property
    def held_keys(self) -> tuple[tuple[str, str], ...]:
        n, s = self.name.lower(), self.section.lower()
        forms = {n, f"{n}.{s}", f"{n}({s})", f"man{s[:1]}/{n}.{s}", f"{n}.{s}.gz"}
        return tuple(("manpage", f) for f in sorted(forms))


@dataclass
class DebPackage:
    name: str
    section: str
    short: str
    long: list[str]  # paragraphs (" ." separated), list items one per entry
    tags: list[str] = field(default_factory=list)
    source: str = ""  # the source package (siblings share their long description)

    @property
    def held_keys(self) -> tuple[tuple[str, str], ...]:
        return (("debian-package", self.name.lower()),)


@dataclass
class ProseDoc:
    source: str
    id: str
    title: str
    text: str
    meta: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- dictd
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64_VALUE[c]
    return n


def dictd_blocks(index_text: str, data: bytes) -> Iterator[tuple[list[str], str]]:
    """(headwords pointing at it, text) of each distinct block of a dictd database, in order.

    Several index lines can point at one block (GCIDE indexes sub-entries and scientific
    names); they are grouped. The ``00-database-*`` info entries are skipped.
    """
    by_span: dict[tuple[int, int], list[str]] = {}
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00-"):
            continue
        span = (_b64(parts[1]), _b64(parts[2]))
        by_span.setdefault(span, []).append(parts[0])
    for (offset, length), heads in sorted(by_span.items()):
        yield heads, data[offset : offset + length].decode("utf-8", errors="replace")


def read_dictd(directory: Path, name: str) -> Iterator[tuple[list[str], str]]:
    """Blocks of ``<directory>/<name>.index`` + ``<name>.dict.dz`` (gzip) or ``<name>.dict``."""
    directory = Path(directory)
    index = (directory / f"{name}.index").read_text(encoding="utf-8", errors="replace")
    dz = directory / f"{name}.dict.dz"
    data = (
        gzip.decompress(dz.read_bytes())
        if dz.is_file()
        else (directory / f"{name}.dict").read_bytes()
    )
    return dictd_blocks(index, data)


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


_BRACES = re.compile(r"\{([^{}]*)\}")
_ANY_BRACKETS = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]")
_ATTRIBUTION = re.compile(r"\s--\s*[A-Z(].*$", re.S)
_SENSE_MARK = re.compile(r"^\s*(?:\d+\.|\([a-z]\)|[a-z]\))\s*")
_DOMAIN_LABEL = re.compile(r"^\s*\((?=[^)]{1,40}\))(?:[A-Z][^)]*\.[^)]*)\)\s*")
_SUBSENSES = re.compile(r"\s\([a-z]\)\s")
_POS_ABBREV = re.compile(r"^(?:[a-z]{1,5}\.|&)")


# Part of speech after the pronunciation: "Word \\Pron\\, n." / ", v. t." / ", a." / ", adv."
_GCIDE_POS = re.compile(r"\\,?\s*(?:\([^)]*\)\s*,?\s*)?(n|v|a|adv)\.")
_POS_LETTER = {"n": "n", "v": "v", "a": "a", "adv": "r"}


def _unbrace(text: str) -> str:
    for _ in range(3):
        text = _BRACES.sub(r"\1", text)
    return text


def _strip_balanced(s: str, open_c: str, close_c: str) -> str:
    depth = 0
    for i, c in enumerate(s):
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return s[i + 1 :]
    return ""


def _strip_gcide_header(paragraph: str) -> tuple[str, str]:
    """(headword, the definition text that follows the header in the first paragraph)."""
    first_line = paragraph.split("\n", 1)[0]
    head = first_line.split("\\", 1)[0].strip()
    cut = paragraph.rfind("\\")
    rest = paragraph[cut + 1 :] if cut >= 0 else paragraph[len(first_line) :]
    for _ in range(40):
        rest = rest.lstrip(" \t\n,;:")
        if not rest:
            break
        if rest[0] == "(":
            rest = _strip_balanced(rest, "(", ")")
        elif rest[0] == "[":
            rest = _strip_balanced(rest, "[", "]")
        elif rest[0] == "{":
            rest = _strip_balanced(rest, "{", "}")
        elif (m := _POS_ABBREV.match(rest)) is not None:
            rest = rest[m.end() :]
        else:
            break
    return head, rest


def _clean_definition(text: str) -> str:
    text = _ANY_BRACKETS.sub(" ", text)
    text = _ATTRIBUTION.sub("", text)
    text = _SENSE_MARK.sub("", text)
    for _ in range(2):
        text = _DOMAIN_LABEL.sub("", text)
    return clean_text(_unbrace(text)).strip(" ;,")


def _definition_ok(text: str) -> bool:
    if not text or not mostly_text(text):
        return False
    lowered = text.lower()
    return not lowered.startswith(("see ", "same as ", "syn:", "syn.")) and "??" not in text


def parse_gcide_block(heads: list[str], body: str) -> list[Entry]:
    """One GCIDE block: the main entry plus ``{Phrase}, definition`` sub-entries."""
    paragraphs = _paragraphs(body)
    if not paragraphs:
        return []
    head, first = _strip_gcide_header(paragraphs[0])
    if not head:
        return []
    keys = {("gcide-headword", " ".join(h.lower().split())) for h in [head, *heads]}
    held = tuple(sorted(keys))
    pos = _GCIDE_POS.search(paragraphs[0].split("\n", 1)[0])
    entry = Entry("gcide", head, head, pos=_POS_LETTER[pos.group(1)] if pos else "", held_keys=held)
    subs: list[Entry] = []
    pieces = ([first] if first.strip() else []) + paragraphs[1:]
    for raw in pieces:
        indent = len(raw) - len(raw.lstrip(" "))
        stripped = raw.strip()
        if stripped.startswith(("[", "Syn:", "Syn.")) or not stripped:
            continue
        if stripped.startswith("Note:"):
            entry.notes.extend(
                s for s in sentences(_clean_definition(stripped[5:])) if _definition_ok(s)
            )
            continue
        if indent >= 8 and " --" in stripped:  # an indented quotation with its author
            quote = _clean_definition(stripped.rsplit(" --", 1)[0])
            if _definition_ok(quote):
                entry.examples.append(quote)
            continue
        sub = re.match(
            r"^\{([^{}]{2,60})\}(?:,\s*or\s*\{[^{}]*\})*\s*(?:\([^)]*\))?,\s*(.*)$", stripped, re.S
        )
        if sub is not None:
            phrase = clean_text(sub.group(1))
            definition = _clean_definition(sub.group(2))
            if _definition_ok(definition) and mostly_text(phrase):
                subs.append(
                    Entry(
                        "gcide",
                        f"{head}#{phrase}",
                        phrase,
                        definitions=[definition],
                        held_keys=held,
                    )
                )
            continue
        for part in _SUBSENSES.split(" " + stripped):
            definition = _clean_definition(part)
            if _definition_ok(definition):
                entry.definitions.append(definition)
    out = [entry] if entry.definitions or entry.examples or entry.notes else []
    return out + subs


_TAG_PREFIX = re.compile(r"^\s*(?:<[^>]{1,40}>\s*,?\s*)+")
_DATE_PARA = re.compile(r"^\(\d{4}-\d{2}-\d{2}\)$")
# "[techspeak]", "/net'rok/" (pronunciation), "(IBM)" at the start of a definition sentence.
_LEADING_LABELS = re.compile(
    r"^(?:\[[^\]]{1,60}\]\s*|/[^/\s][^/]{0,40}/\s*|\([A-Z][A-Za-z]{1,15}\)\s*)+"
)


def parse_foldoc_block(heads: list[str], body: str) -> Entry | None:
    """FOLDOC: term line, then ``<category> text {refs}`` paragraphs and a ``(date)``."""
    lines = body.split("\n", 1)
    term = lines[0].strip()
    if not term or len(lines) < 2:
        return None
    entry = Entry("foldoc", term, term, held_keys=(("foldoc-term", term.lower()),))
    for raw in _paragraphs(lines[1]):
        text = " ".join(raw.split())
        if _DATE_PARA.match(text) or text.startswith(("[", "(FTP", "Home:", "E-mail", "See ")):
            continue
        text = _unbrace(_TAG_PREFIX.sub("", text))
        for sentence in sentences(text):
            sentence = _LEADING_LABELS.sub("", _SENSE_MARK.sub("", sentence)).strip()
            if _definition_ok(sentence):
                (entry.definitions if not entry.definitions else entry.notes).append(sentence)
    return entry if entry.definitions else None


def parse_jargon_block(heads: list[str], body: str) -> Entry | None:
    """Jargon File: term line, a pronunciation/part-of-speech line, ``[tag]`` paragraphs."""
    lines = body.split("\n")
    term = lines[0].strip()
    if not term:
        return None
    entry = Entry("jargon", term, term, held_keys=(("jargon-term", term.lower()),))
    rest = "\n".join(lines[1:])
    for raw in _paragraphs(rest):
        text = " ".join(raw.split())
        if re.fullmatch(r"(?:/[^/]*/\s*)?(?:[a-z]+\.\s*,?\s*)+", text) or len(text) < 12:
            continue  # "n." or "/pro-nun/ adj."
        text = _unbrace(re.sub(r"^\[[^\]]{1,60}\]\s*", "", text))
        for sentence in sentences(text):
            sentence = _LEADING_LABELS.sub("", _SENSE_MARK.sub("", sentence)).strip()
            if _definition_ok(sentence):
                (entry.definitions if not entry.definitions else entry.notes).append(sentence)
    return entry if entry.definitions else None


def parse_vera_block(heads: list[str], body: str) -> Entry | None:
    """VERA: an acronym, then its expansion(s) ``Expansion (category, category)``."""
    lines = [line.strip() for line in body.split("\n")]
    term = lines[0]
    if not term:
        return None
    entry = Entry("vera", term, term, pos="n", held_keys=(("vera-term", term.lower()),))
    for line in lines[1:]:
        if not line:
            continue
        line = re.sub(r',?\s*"[^"]*"\s*$', "", line)  # alternate spelling
        line = re.sub(r"\s*\([^()]*\)\s*$", "", line).strip(" ,;")
        line = _unbrace(line)
        if line and mostly_text(line) and not line.lower().startswith("see "):
            entry.definitions.append(line)
    return entry if entry.definitions else None


# ------------------------------------------------------------------------------- man pages
_ESCAPES = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\([A-Za-z0-9]{2}|[A-Za-z0-9])"), ""),
    (re.compile(r"\\s[+-]?\d+|\\s\([+-]?\d+|\\s\[[^\]]*\]"), ""),
    (re.compile(r"\\[hvwlLoxXbDZ]'[^']*'"), ""),
    (re.compile(r"\\[nk*gF]\(..|\\[nk*gFY]\[[^\]]*\]|\\[nk*gF][A-Za-z0-9]"), ""),
    (re.compile(r"\\\((?:em|en|hy|mi)"), "-"),
    (re.compile(r"\\\((?:aq|cq|oq|fm)"), "'"),
    (re.compile(r"\\\((?:dq|lq|rq|Rq|Lq)"), '"'),
    (re.compile(r"\\\((?:bu|sq|ci)"), ""),
    (re.compile(r"\\\((?:co)"), "(c)"),
    (re.compile(r"\\\((?:rg)"), "(R)"),
    (re.compile(r"\\\((?:tm)"), "(TM)"),
    (re.compile(r"\\\([A-Za-z0-9<>=+\-^'`!~|.:]{2}"), ""),
    (re.compile(r"\\\[(?:em|en|hy|mi|dash)\]"), "-"),
    (re.compile(r"\\\[(?:aq|cq|oq)\]"), "'"),
    (re.compile(r"\\\[(?:dq|lq|rq)\]"), '"'),
    (re.compile(r"\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\[&|^%:c!dur{}acptz/,]"), ""),
    (re.compile(r"\\\".*$"), ""),
]
_FONT_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
_FONT_SPACED = {"B", "I", "SM", "SB", "R"}
_BREAKS = {
    "PP",
    "P",
    "LP",
    "TP",
    "IP",
    "HP",
    "sp",
    "br",
    "RS",
    "RE",
    "Pp",
    "Bl",
    "El",
    "It",
    "Lp",
    "TQ",
    "PD",
    "in",
    "ti",
    "bp",
    "ne",
    "Ss",
    "SS",
    "D1",
    "Dl",
    "Bd",
    "Ed",
}
_SKIP_BLOCK_START = {
    "nf": "fi",
    "EX": "EE",
    "TS": "TE",
    "EQ": "EN",
    "ig": "..",
    "de": "..",
    "am": "..",
    "PS": "PE",
    "Vb": "Ve",
    "cs": "",
}
# mdoc: macros whose arguments are text, and the few that change them.
_MDOC_DROP = {
    "Dd",
    "Dt",
    "Os",
    "Bl",
    "El",
    "Bd",
    "Ed",
    "Bk",
    "Ek",
    "Lb",
    "In",
    "Fo",
    "Fc",
    "Rs",
    "Re",
    "Sm",
    "%A",
    "%B",
    "%D",
    "%J",
    "%N",
    "%O",
    "%P",
    "%R",
    "%T",
    "%V",
}
_MDOC_TOKENS = re.compile(
    r"^(?:Ac|Ao|Ap|Aq|Ar|Bc|Bo|Bq|Brc|Bro|Brq|Bx|Cd|Cm|Dc|Do|Dq|Dv|Em|Er|Es|Ev|Ex|Fa|Fd|Fl|Fn"
    r"|Ft|Hf|Ic|Li|Lk|Ms|Mt|Nm|No|Ns|Nx|Oc|Oo|Op|Ot|Ox|Pa|Pc|Pf|Po|Pq|Qc|Ql|Qo|Qq|Sc|So|Sq"
    r"|St|Sx|Sy|Tn|Ux|Va|Vt|Xc|Xo|Xr|At|Bsx|Dx|Fx|An|Ta|Sm)$"
)


def _unescape_roff(text: str) -> str:
    for pattern, repl in _ESCAPES:
        text = pattern.sub(repl, text)
    return text.replace("\\\\", "\\")


def _macro_args(rest: str) -> list[str]:
    args: list[str] = []
    for m in re.finditer(r'"((?:[^"]|"")*)"|(\S+)', rest):
        args.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2))
    return args


def _mdoc_text(macro: str, args: list[str], page_name: str) -> str:
    out: list[str] = []
    flag = macro == "Fl"
    for i, arg in enumerate(args):
        if _MDOC_TOKENS.match(arg):
            flag = arg == "Fl"
            if arg == "Nm" and (i + 1 >= len(args) or _MDOC_TOKENS.match(args[i + 1])):
                out.append(page_name)
            continue
        out.append(f"-{arg}" if flag else arg)
        flag = False
    if macro == "Fl" and not args:
        out.append("-")
    if macro == "Nm" and not args:
        out.append(page_name)
    text = " ".join(out)
    return re.sub(r"\s+([,.;:)\]])", r"\1", text)


def parse_man_page(source: str, package: str = "", file_name: str = "") -> ManPage | None:
    """NAME one-liner and DESCRIPTION paragraphs of one roff page (man or mdoc macros).

    ``None`` for ``.so`` links, pages without a NAME one-liner, and reserved pages.
    """
    stem = file_name.removesuffix(".gz")
    guess_name, _, guess_section = stem.rpartition(".")
    if not guess_name:
        guess_name, guess_section = stem, ""
    name, section = guess_name, guess_section
    sections: dict[str, list[str]] = {}
    current: str | None = None
    paragraph: list[str] = []
    skip_until: str | None = None
    skip_next_line = False

    def flush() -> None:
        if current is not None and paragraph:
            text = clean_text(" ".join(paragraph))
            if text:
                sections.setdefault(current, []).append(text)
        paragraph.clear()

    lines = source.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):
            line = line[:-1] + lines[i]
            i += 1
        if skip_until is not None:
            if line.startswith((f".{skip_until}", f"'{skip_until}")) or (
                skip_until == ".." and line.strip() == ".."
            ):
                skip_until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '.\\"')) or line.strip() in {".", "'"}:
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro, rest = parts[0], parts[1] if len(parts) > 1 else ""
            if macro == "so":
                return None
            if macro in _SKIP_BLOCK_START:
                flush()
                end = _SKIP_BLOCK_START[macro]
                if macro == "Bd" and "-literal" not in rest and "-unfilled" not in rest:
                    continue
                if end:
                    skip_until = end
                continue
            args = _macro_args(rest)
            if macro in {"TH", "Dt"}:
                if args and not guess_name:
                    name = _unescape_roff(args[0])
                if len(args) > 1 and not guess_section:
                    section = _unescape_roff(args[1])
                continue
            if macro in {"SH", "Sh"}:
                flush()
                title = " ".join(args).upper() if args else ""
                if not title and i < len(lines):
                    title = _unescape_roff(lines[i]).strip().upper()
                    i += 1
                current = _unescape_roff(title).strip('" ')
                continue
            if macro == "Nd":
                paragraph.append("\\- " + _unescape_roff(" ".join(args)))
                continue
            if macro == "TP":
                flush()
                skip_next_line = True
                continue
            if macro == "IP" or macro == "It":
                flush()
                continue
            if macro in _BREAKS:
                flush()
                continue
            if macro in _FONT_ALTERNATING:
                paragraph.append(_unescape_roff("".join(args)))
                continue
            if macro in _FONT_SPACED:
                if args:
                    paragraph.append(_unescape_roff(" ".join(args)))
                elif i < len(lines):
                    paragraph.append(_unescape_roff(lines[i]))
                    i += 1
                continue
            if macro in _MDOC_DROP:
                continue
            if re.fullmatch(r"[A-Z][a-z]{1,2}|Nm|%[A-Z]", macro):
                text = _mdoc_text(macro, args, name)
                if text:
                    paragraph.append(_unescape_roff(text))
                continue
            continue  # every other request (.if, .ds, .nr, .ft, .ad, .UR, ...)
        if skip_next_line:
            skip_next_line = False
            flush()
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append(_unescape_roff(line))
    flush()

    name_text = " ".join(sections.get("NAME", []))
    match = re.match(r"^(.*?)\s+(?:\\-|-|—|--)\s+(.+)$", name_text)
    if match is None:
        return None
    names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    summary = clean_text(match.group(2)).rstrip(".")
    name = (name or (names[0] if names else "")).strip()
    if not names or not summary or not name:
        return None
    if name.upper() == name and names[0].lower() == name.lower():
        name = names[0]  # .TH TAR 1 → "tar"
    if name.lower().startswith(RESERVED_MAN_PREFIXES) or _FAQ_PAGE.search(name + stem):
        return None
    description = sections.get("DESCRIPTION", [])
    return ManPage(package, name, section.lower(), names, summary, description)


def read_man_pages(root: Path, package: str) -> Iterator[ManPage]:
    """English pages under ``<root>/usr/share/man/man*/`` (translations skipped), sorted."""
    man = Path(root) / "usr" / "share" / "man"
    if not man.is_dir():
        return
    for path in sorted(man.glob("man*/*")):
        if path.is_symlink() or not path.is_file():
            continue
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        page = parse_man_page(text, package, path.name)
        if page is not None:
            yield page


# ------------------------------------------------------------------------- Debian packages
def _control_records(text: str) -> Iterator[dict[str, str]]:
    record: dict[str, str] = {}
    key = ""
    for line in text.split("\n"):
        if not line.strip():
            if record:
                yield record
            record, key = {}, ""
            continue
        if line[0] in " \t" and key:
            record[key] += "\n" + line
            continue
        key, _, value = line.partition(":")
        record[key] = value.strip()
    if record:
        yield record


def _long_paragraphs(body: str) -> list[str]:
    """Long description lines → paragraphs (``.`` separates) and list items (one each)."""
    out: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            out.append(" ".join(current))
            current.clear()

    for line in body.split("\n"):
        content = line[1:] if line.startswith(" ") else line
        if content.strip() == ".":
            flush()
            continue
        item = re.match(r"^\s*(?:[*+o-]|\d+[.)])\s+(.*)$", content)
        if item is not None:
            flush()
            current.append(item.group(1).strip())
            continue
        if content.startswith(" ") and current and not current[-1].endswith((".", ":")):
            current.append(content.strip())  # continuation of a list item
            continue
        current.append(content.strip())
    flush()
    return [clean_text(p) for p in out if p.strip()]


def parse_debian_translations(text: str) -> dict[str, tuple[str, list[str]]]:
    """``Translation-en`` → package → (short description, long-description paragraphs)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for record in _control_records(text):
        name = record.get("Package", "")
        desc = record.get("Description-en", "")
        if not name or not desc or name in out:
            continue
        short, _, body = desc.partition("\n")
        out[name] = (clean_text(short), _long_paragraphs(body))
    return out


def parse_debian_packages(text: str) -> dict[str, dict[str, str]]:
    """``Packages`` → package → {section, description (short), tags, source} (first wins)."""
    out: dict[str, dict[str, str]] = {}
    for record in _control_records(text):
        name = record.get("Package", "")
        if not name or name in out:
            continue
        out[name] = {
            "section": record.get("Section", ""),
            "description": clean_text(record.get("Description", "").split("\n", 1)[0]),
            "tags": " ".join(record.get("Tag", "").split()),
            "source": (record.get("Source", "") or name).split()[0],
        }
    return out


def debian_packages(
    packages: dict[str, dict[str, str]], translations: dict[str, tuple[str, list[str]]]
) -> list[DebPackage]:
    """Every package with a description, sorted by name; transitional/dummy and reserved ones
    are left out."""
    out: list[DebPackage] = []
    for name in sorted(set(packages) | set(translations)):
        if is_reserved_package(name):
            continue
        info = packages.get(name, {})
        short, long = translations.get(name, (info.get("description", ""), []))
        if not short or re.search(r"\b(?:transitional|dummy)\b", short, re.I):
            continue
        tags = [t.strip() for t in info.get("tags", "").split(",") if t.strip()]
        source = info.get("source", name)
        out.append(DebPackage(name, info.get("section", ""), short, long, tags, source))
    return out


# ----------------------------------------------------------------------------------- prose
def read_sotu(data_dir: Path) -> Iterator[ProseDoc]:
    """State of the Union addresses (``data/<year>_<name>_<party>.json``), sorted."""
    for path in sorted(Path(data_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict) or "text" not in doc:
            continue
        meta = {"year": str(doc.get("year", "")), "name": str(doc.get("name", ""))}
        title = f"{meta['year']} State of the Union, {meta['name']}"
        yield ProseDoc("sotu", path.stem, title, str(doc["text"]), meta)


def read_moby_dick(data_dir: Path) -> Iterator[ProseDoc]:
    """Moby Dick chapters (``data/chapter_<n>.json``), in chapter order."""
    paths = sorted(
        Path(data_dir).glob("chapter_*.json"),
        key=lambda p: int(re.sub(r"\D", "", p.stem) or 0),
    )
    for path in paths:
        doc = json.loads(path.read_text(encoding="utf-8"))
        yield ProseDoc("moby-dick", path.stem, str(doc.get("title", "")), str(doc.get("text", "")))


_FORTUNE_SKIP_FILES = {"art", "ascii-art"}


def parse_fortune_file(text: str) -> Iterator[str]:
    """Fortunes of one ``%``-separated file: attribution lines dropped, one line each."""
    for block in re.split(r"^%\s*$", text, flags=re.M):
        lines = [ln for ln in block.strip("\n").split("\n") if ln.strip()]
        if not lines or len(lines) > 8:
            continue
        kept = [ln for ln in lines if not re.match(r"^\s*(?:--|―|-)\s*\S", ln.strip()[:3])]
        text_ = clean_text(" ".join(kept))
        if text_ and mostly_text(text_, 0.7):
            yield text_


def read_fortunes(root: Path) -> Iterator[tuple[str, str]]:
    """(file name, fortune) from ``usr/share/games/fortunes/`` of the ``fortunes`` package."""
    directory = Path(root) / "usr" / "share" / "games" / "fortunes"
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.is_symlink() or path.suffix in {".dat", ".u8"} or path.name in _FORTUNE_SKIP_FILES:
            continue
        if not path.is_file():
            continue
        for fortune in parse_fortune_file(path.read_text(encoding="utf-8", errors="replace")):
            yield path.name, fortune


def prose_sentences(paragraphs: Iterable[str]) -> Iterator[str]:
    """Sentences (long ones cut at clauses) of prose paragraphs that look like text."""
    for paragraph in paragraphs:
        for sentence in sentences(paragraph):
            for piece in short_pieces(sentence):
                if mostly_text(piece):
                    yield piece
