"""Text helpers of the query corpus: normalizing, sentence and clause splitting, length limits.

Kept free of any data source so the parsers (``query_corpus_sources``) and the question
generators (``query_corpus_generate``) share one notion of a word, a sentence and a
"short text".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

__all__ = [
    "MAX_WORDS",
    "MIN_WORDS",
    "STOPWORDS",
    "clauses",
    "clean_text",
    "content_words",
    "mostly_text",
    "normalize",
    "sentences",
    "sentences_any_case",
    "short_pieces",
    "tokens",
    "word_count",
]

MIN_WORDS = 2
MAX_WORDS = 40
# A sentence longer than MAX_WORDS is cut at clause marks; pieces keep at least this many words.
MIN_PIECE_WORDS = 3

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either else etc
    few for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just may me might more most must my myself neither no nor not now of
    off on once one only or other ought our ours ourselves out over own per same shall she should
    so some such than that the their theirs them themselves then there these they this those
    through thus to too under until up upon us used using very via was we were what when where
    whether which while who whom whose why will with within without would yet you your yours
    yourself yourselves e.g i.e something someone somebody especially usually often""".split()
)

_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'+#./_-]*[A-Za-z0-9+#]|[A-Za-z0-9]")
# End of a sentence: . ! ? (optionally closing quotes/brackets) then space and an opener.
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = frozenset(
    """mr mrs ms dr st jr sr prof gen gov sen rep col capt lt sgt vs cf eg ie etc al fig no nos
    vol approx esp incl dept univ co corp inc ltd jan feb mar apr jun jul aug sep sept oct nov
    dec u.s e.g i.e a.d b.c viz ca ch pp op mt ft""".split()
)
_CLAUSE = re.compile(r"\s*(?:;|:\s|\s--?\s|\s—\s|—)\s*")
_COMMA = re.compile(r",\s+")


def normalize(text: str) -> str:
    """The dedup key: lowercase, whitespace collapsed, stripped."""
    return _WS.sub(" ", text.lower()).strip()


def clean_text(text: str) -> str:
    """NFC, control characters dropped, whitespace collapsed, stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text.replace("\u00ad", ""))
    return _WS.sub(" ", text).strip()


def word_count(text: str) -> int:
    return len(text.split())


def tokens(text: str) -> list[str]:
    """Lowercased word tokens (letters/digits with inner ' + # . / _ -)."""
    return [t.lower() for t in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Tokens that are not stopwords and contain a letter."""
    return [t for t in tokens(text) if t not in STOPWORDS and any(c.isalpha() for c in t)]


def mostly_text(text: str, min_letter_share: float = 0.6) -> bool:
    """True for prose-like text: enough letters, no URL/path/code-looking junk."""
    if not text:
        return False
    letters = sum(c.isalpha() for c in text)
    if letters < 2 or letters / len(text.replace(" ", "")) < min_letter_share:
        return False
    if "://" in text or "www." in text or "@" in text:
        return False
    if re.search(r"[\u2500-\u259f]", text) or re.search(r"(?<![\w)\"'])\?(?!$)", text):
        return False  # box drawing; "?" standing for a glyph the source could not encode
    return "\\" not in text and "{" not in text and "}" not in text


def _is_abbreviation(piece: str) -> bool:
    last = piece.rstrip("\"')]").split()[-1] if piece.split() else ""
    word = last.rstrip(".").lower()
    if not last.endswith("."):
        return False
    if word in _ABBREV:
        return True
    # Initials such as "J." or "U.S." (single letters between dots).
    return bool(re.fullmatch(r"(?:[a-z]\.)*[a-z]", word))


def sentences(text: str) -> list[str]:
    """Split prose into sentences (abbreviations and initials do not end one)."""
    text = clean_text(text)
    if not text:
        return []
    pieces: list[str] = []
    start = 0
    for match in _SENT_END.finditer(text):
        piece = text[start : match.start()] + text[match.start() : match.end()].rstrip()
        if pieces and _is_abbreviation(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {piece.strip()}"
        else:
            pieces.append(piece.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        if pieces and _is_abbreviation(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {tail}"
        else:
            pieces.append(tail)
    return [p for p in pieces if p]


_ANY_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def sentences_any_case(text: str) -> list[str]:
    """``sentences`` for text that lost its case (normalized): any ``. `` ends a sentence
    unless an abbreviation or initial precedes it."""
    pieces: list[str] = []
    for piece in _ANY_END.split(clean_text(text)):
        piece = piece.strip()
        if not piece:
            continue
        if pieces and _is_abbreviation(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def clauses(sentence: str, min_words: int = 3, max_words: int = 14) -> list[str]:
    """Phrases cut from a sentence at clause marks and commas, ``min_words..max_words`` long."""
    out: list[str] = []
    for part in _CLAUSE.split(sentence):
        for phrase in _COMMA.split(part):
            phrase = phrase.strip(" ,;:.!?\"'()[]-—")
            if min_words <= word_count(phrase) <= max_words:
                out.append(phrase)
    return out


def short_pieces(text: str, max_words: int = MAX_WORDS) -> Iterator[str]:
    """``text`` itself when short enough, else its clause pieces of MIN_PIECE_WORDS+ words."""
    if word_count(text) <= max_words:
        yield text
        return
    for part in _CLAUSE.split(text):
        part = part.strip(" ,;:")
        n = word_count(part)
        if MIN_PIECE_WORDS <= n <= max_words:
            yield part
        elif n > max_words:
            chunk: list[str] = []
            for phrase in _COMMA.split(part):
                if chunk and word_count(", ".join([*chunk, phrase])) > max_words:
                    joined = ", ".join(chunk)
                    if word_count(joined) >= MIN_PIECE_WORDS:
                        yield joined
                    chunk = []
                chunk.append(phrase)
            joined = ", ".join(chunk)
            if MIN_PIECE_WORDS <= word_count(joined) <= max_words:
                yield joined


def sentence_texts(paragraphs: Iterable[str]) -> Iterator[str]:
    """Short sentences (or clause pieces of long ones) of prose paragraphs."""
    for paragraph in paragraphs:
        for sentence in sentences(paragraph):
            yield from short_pieces(sentence)
