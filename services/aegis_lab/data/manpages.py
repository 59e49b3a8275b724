"""Man pages from Debian packages: a small, robust roff reader and NAME → DESCRIPTION pairs.

The reader understands what man(7) and most mdoc(7) pages use and drops the rest: requests
and macros become paragraph breaks or their text arguments, font/size/motion escapes are
removed, the common glyph escapes (``\\(em``, ``\\(aq``, ``\\-`` ...) become characters,
conditionals, macro definitions, ``.ig`` blocks and equations are skipped, tables keep their
cells. A page is split into sections (``.SH``/``.Sh``) of paragraphs; ``.SS`` headings and
``.TP``/``.IP`` tags are paragraphs of their own, marked as headings, so FAQ man pages
(``gitfaq(7)``) can be read as question → answer too.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MAN_PACKAGES",
    "Block",
    "ManPage",
    "cap_text",
    "iter_manpage_files",
    "load_manpages",
    "parse_manpage",
    "read_man_file",
    "roff_blocks",
    "roff_text",
]

# Man-page-rich packages in Debian main (English pages only; perl-doc is reserved, see suite).
MAN_PACKAGES = (
    "manpages",
    "manpages-dev",
    "git-man",
    "coreutils",
    "util-linux",
    "systemd",
    "openssl",
    "libssl-doc",
    "iproute2",
    "findutils",
    "procps",
    "dpkg",
    "dpkg-dev",
    "apt",
    "debhelper",
    "devscripts",
    "e2fsprogs",
    "tar",
    "grep",
    "sed",
    "gawk",
    "openssh-client",
    "rsync",
    "tcl8.6-doc",
    "libx11-doc",
    "lvm2",
    "iputils-ping",
    "nftables",
    "mount",
    "bsdextrautils",
)

_GLYPHS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "mi": "-",
    "bu": "•",
    "aq": "'",
    "cq": "'",
    "oq": "'",
    "dq": '"',
    "lq": '"',
    "rq": '"',
    "Lq": '"',
    "Rq": '"',
    "co": "©",
    "rg": "®",
    "tm": "™",
    "de": "°",
    "mu": "×",
    "di": "÷",
    "+-": "±",
    ">=": "≥",
    "<=": "≤",
    "!=": "≠",
    "->": "→",
    "<-": "←",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "sl": "/",
    "ga": "`",
    "aa": "'",
    "ul": "_",
    "pl": "+",
    "eq": "=",
    "fm": "'",
    "sq": "□",
    "ci": "○",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "ba": "|",
    "br": "|",
    "lh": "☜",
    "rh": "☞",
    "Fo": "«",
    "Fc": "»",
}
_STRINGS = {"lq": '"', "rq": '"', "R": "®", "Tm": "™", "ga": "`", "aa": "'"}
_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\[[^\]]*\]|\(..|.)          # font
      | s[-+]?(?:\d|\(\d\d|\[\d+\])     # size
      | [*](?:\[(?P<s1>[^\]]*)\]|\((?P<s2>..)|(?P<s3>.))   # string
      | \((?P<g1>..)                    # 2-char glyph
      | \[(?P<g2>[^\]]*)\]              # named glyph
      | [hvwoxlLbDNRSXYZk]'[^']*'       # motions, widths, drawing
      | n(?:\[[^\]]*\]|\(..|.)          # number register
      | [gkmMVYz$](?:\[[^\]]*\]|\(..|.) # misc registers/colours
      | "(?P<comment>[^\n]*)            # comment
      | (?P<ch>.)                       # one-character escapes
    )""",
    re.X,
)
_ONE_CHAR = {
    "-": "-",
    "e": "\\",
    "\\": "\\",
    " ": " ",
    "~": " ",
    "0": " ",
    "&": "",
    "|": "",
    "^": "",
    "%": "",
    ":": "",
    "c": "",
    "/": "",
    ",": "",
    "'": "'",
    "`": "`",
    ".": ".",
    "t": " ",
    "p": "",
    "d": "",
    "u": "",
    "r": "",
    "{": "",
    "}": "",
    "a": "",
    "E": "",
}
_FONT_MACROS = {"B", "I", "SM", "SB", "BR", "BI", "IB", "IR", "RB", "RI", "CW", "CR", "CB"}
_BREAK_MACROS = {
    "PP", "P", "LP", "sp", "br", "RS", "RE", "nf", "fi", "HP", "EX", "EE", "Pp", "Bl", "El",
    "Bd", "Ed", "Lp", "TQ", "in", "ti", "ne", "bp",
}  # fmt: skip
_IGNORED_MACROS = {
    "TH", "Dd", "Dt", "Os", "ft", "ad", "na", "hy", "nh", "PD", "ds", "nr", "so", "ll", "ta",
    "ce", "cs", "ss", "ps", "vs", "mso", "tr", "ev", "rm", "als", "rr", "fam", "color", "pc",
    "lf", "cc", "ec", "eo", "UE", "ME", "Ns", "Sm", "An", "ig", "Ox", "Nx", "Fx", "Bx", "Dx",
}  # fmt: skip
_MDOC_WORDS = re.compile(
    r"\b(?:Fl|Ar|Op|Oo|Oc|Xr|Pa|Cm|Ic|Li|Em|Sy|Va|Ev|Dv|Er|Fn|Fa|Ft|Fd|Ql|Dq|Do|Dc|Sq|So|Sc|Pq|"
    r"Po|Pc|Aq|Ao|Ac|Bq|Bo|Bc|Qq|Qo|Qc|Ms|No|Ns|Tn|Ux|At|St|Lk|Mt|Nm|Cd|Ad|In|Ot|Vt|Xo|Xc|Ta)\b"
)
_ARGS = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')


def _glyph(name: str) -> str:
    if name in _GLYPHS:
        return _GLYPHS[name]
    if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
        return chr(int(name[1:], 16))
    return ""


def _escape(match: re.Match[str]) -> str:
    g = match.groupdict()
    if g["comment"] is not None:
        return ""
    for key in ("s1", "s2", "s3"):
        if g[key] is not None:
            return _STRINGS.get(g[key], "")
    for key in ("g1", "g2"):
        if g[key] is not None:
            return _glyph(g[key])
    if g["ch"] is not None:
        return _ONE_CHAR.get(g["ch"], g["ch"])
    return ""


def roff_text(text: str) -> str:
    """Text with roff escapes resolved (fonts/sizes dropped, glyphs as characters)."""
    return _ESCAPE.sub(_escape, text)


def _split_args(rest: str) -> list[str]:
    return [
        m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2)
        for m in _ARGS.finditer(rest)
    ]


@dataclass
class Block:
    """A paragraph of one section; ``heading`` marks ``.SS`` titles and ``.TP``/``.IP`` tags."""

    section: str
    text: str
    heading: bool = False


@dataclass
class _Reader:
    blocks: list[Block] = field(default_factory=list)
    section: str = ""
    words: list[str] = field(default_factory=list)
    heading_next: bool = False

    def flush(self, heading: bool = False) -> None:
        text = " ".join(" ".join(self.words).split())
        if text:
            self.blocks.append(Block(self.section, text, heading))
        self.words = []

    def add(self, text: str) -> None:
        if text.strip():
            self.words.append(text)


def _skip_conditional(lines: list[str], i: int) -> int:
    """Index after an ``.if``/``.ie``/``.el`` request (and its ``\\{ ... \\}`` block)."""
    depth = lines[i].count("\\{") - lines[i].count("\\}")
    i += 1
    while depth > 0 and i < len(lines):
        depth += lines[i].count("\\{") - lines[i].count("\\}")
        i += 1
    return i


def roff_blocks(source: str) -> list[Block]:
    """Paragraph blocks of a man page source, each tagged with its section name (upper case)."""
    lines = source.replace("\r\n", "\n").split("\n")
    r = _Reader()
    i = 0
    table_format = False
    in_table = False
    while i < len(lines):
        line = lines[i]
        i += 1
        if in_table:
            if line.startswith((".TE", "'TE")):
                in_table = False
                r.flush()
            elif table_format:
                table_format = not line.rstrip().endswith(".")
            elif not line.startswith((".", "'")):
                cells = line.replace("T{", " ").replace("T}", " ").replace("\t", " ")
                r.add(roff_text(cells))
                if line.strip().endswith("T}") or "T{" not in line:
                    r.flush()
            continue
        if not line.startswith((".", "'")):
            if r.heading_next:
                r.flush()
                r.add(roff_text(line))
                r.flush(heading=True)
                r.heading_next = False
            elif not line.strip():
                r.flush()
            else:
                r.add(roff_text(line))
            continue
        body = line[1:].lstrip()
        if body.startswith(('\\"', '"')) or not body:
            continue
        macro, _, rest = body.partition(" ")
        macro, rest = macro.strip(), rest.strip()
        if "\t" in macro:
            macro, _, extra = macro.partition("\t")
            rest = (extra + " " + rest).strip()
        if macro in {"if", "ie", "el", "while"}:
            i = _skip_conditional(lines, i - 1)
        elif macro in {"de", "de1", "am", "ig"}:
            while i < len(lines) and not lines[i].startswith(".."):
                i += 1
            i += 1
        elif macro in {"EQ", "PS"}:
            end = ".EN" if macro == "EQ" else ".PE"
            while i < len(lines) and not lines[i].startswith(end):
                i += 1
            i += 1
        elif macro == "TS":
            r.flush()
            in_table, table_format = True, True
        elif macro in {"SH", "Sh"}:
            r.flush()
            name = " ".join(_split_args(roff_text(rest)))
            if not name and i < len(lines):
                name = roff_text(lines[i]).strip().strip('"')
                i += 1
            r.section = " ".join(name.upper().split())
        elif macro in {"SS", "Ss"}:
            r.flush()
            title = " ".join(_split_args(roff_text(rest)))
            if title:
                r.add(title)
                r.flush(heading=True)
            else:
                r.heading_next = True
        elif macro in {"TP", "TQ"}:
            r.flush()
            r.heading_next = True
        elif macro == "IP":
            r.flush()
            args = _split_args(roff_text(rest))
            tag = args[0] if args else ""
            if re.search(r"\w{2}", tag):
                r.add(tag)
                r.flush(heading=True)
        elif macro == "Nd":
            r.add("- " + roff_text(rest))
        elif macro in {"Nm"} and r.section == "NAME":
            r.add(roff_text(rest).replace(" ,", ","))
        elif macro in _FONT_MACROS:
            args = _split_args(roff_text(rest))
            joiner = "" if len(macro) == 2 and macro not in {"SM", "SB", "CW", "CR", "CB"} else " "
            text = joiner.join(args)
            if not text and i < len(lines) and not lines[i].startswith((".", "'")):
                text = roff_text(lines[i])
                i += 1
            if r.heading_next:
                r.add(text)
                r.flush(heading=True)
                r.heading_next = False
            else:
                r.add(text)
        elif macro in {"UR", "MT"}:
            continue
        elif macro in _BREAK_MACROS:
            r.flush()
        elif macro in _IGNORED_MACROS or macro.startswith("\\"):
            continue
        elif re.fullmatch(r"[A-Z][a-z]", macro):  # other mdoc macros carry text
            words = _MDOC_WORDS.sub(" ", roff_text(rest))
            r.add(" ".join(words.split()))
        # everything else (low-level requests) is dropped
    r.flush()
    return r.blocks


def read_man_file(path: Path) -> str:
    """A man page source (``.gz`` or plain), decoded leniently."""
    data = Path(path).read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def cap_text(text: str, limit: int = 2000) -> str:
    """At most ``limit`` characters, cut at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[: space if space > limit // 2 else limit].rstrip()


@dataclass(frozen=True)
class ManPage:
    """One page: ``id`` is ``name.section`` (the file name), ``names`` the NAME line's names."""

    id: str
    package: str
    names: tuple[str, ...]
    summary: str
    description: str


_NAME_SPLIT = re.compile(r"\s+(?:\\?-{1,2}|—|–)\s+")


def parse_manpage(
    source: str, page_id: str, package: str = "", max_chars: int = 2000
) -> ManPage | None:
    """NAME names + one-liner and the DESCRIPTION text; ``None`` for ``.so`` redirects and pages
    without both parts."""
    if re.match(r"^\s*\.so\s", source) or "\n.so " in source[:400]:
        return None
    blocks = roff_blocks(source)
    name_text = " ".join(b.text for b in blocks if b.section in {"NAME", "NAMN", "NOM"})
    parts = _NAME_SPLIT.split(name_text, maxsplit=1)
    if len(parts) != 2:
        return None
    names = tuple(n.strip() for n in parts[0].split(",") if n.strip())
    summary = " ".join(parts[1].split()).strip()
    description = "\n".join(
        b.text for b in blocks if b.section in {"DESCRIPTION", "DESCRIPTIONS", "OVERVIEW"}
    )
    if not names or not summary or not description:
        return None
    return ManPage(page_id, package, names, summary, cap_text(description, max_chars))


def iter_manpage_files(root: Path) -> Iterator[Path]:
    """English man page files of an unpacked package (``usr/share/man/man*/``), sorted; links
    (aliases of another page) are skipped."""
    man = Path(root) / "usr" / "share" / "man"
    for path in sorted(man.glob("man*/*")):
        if path.is_file() and not path.is_symlink():
            yield path


def page_id(path: Path) -> str:
    """``ls.1`` from ``.../man1/ls.1.gz``."""
    return path.name.removesuffix(".gz")


def load_manpages(roots: Iterable[tuple[str, Path]], max_chars: int = 2000) -> list[ManPage]:
    """Pages of ``(package, unpacked root)`` pairs in order; a page id seen before is skipped."""
    seen: set[str] = set()
    pages: list[ManPage] = []
    for package, root in roots:
        for path in iter_manpage_files(root):
            pid = page_id(path)
            if pid in seen:
                continue
            page = parse_manpage(read_man_file(path), pid, package, max_chars)
            if page is not None:
                seen.add(pid)
                pages.append(page)
    return pages
