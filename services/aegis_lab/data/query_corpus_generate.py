"""Query-shaped texts generated from dictionary entries, man pages and package descriptions.

The student must learn the *query* side of the teacher's space, and no query log exists here,
so questions ("how do I ...", "what is ...", "which package ..."), keyword queries ("tar
archiving utility") and titles are written from the sources' own facts with many templates,
casings and punctuations. A template that asks for something (a reverse-dictionary question,
"which command ...", "which package ...") never contains its answer: ``leaks`` checks it, and
the generator falls back to another template when it would.

Everything is driven by a ``random.Random`` the caller seeds per item, so the output depends
only on the seed and the item, not on the order items are met.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from aegis_lab.data.query_corpus_sources import DebPackage, Entry, ManPage, ProseDoc
from aegis_lab.data.query_corpus_text import STOPWORDS, content_words, word_count

__all__ = [
    "COMMAND_VERBS",
    "Gen",
    "Lexicon",
    "debian_texts",
    "entry_texts",
    "gerund",
    "how_to_phrases",
    "keyword_spans",
    "leaks",
    "manpage_texts",
    "prose_texts",
    "surface",
    "third_person",
]


@dataclass(frozen=True)
class Gen:
    """A generated text: ``kind`` is question, keyword or title; ``template`` for the stats."""

    kind: str
    text: str
    template: str


@dataclass
class Lexicon:
    """Single-word lemmas by part of speech (WordNet), for chunking and verb detection."""

    nouns: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    adjectives: frozenset[str] = frozenset()
    adverbs: frozenset[str] = frozenset()
    _plural_cache: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_synsets(cls, synsets: Iterable) -> Lexicon:
        by_pos: dict[str, set[str]] = {"n": set(), "v": set(), "a": set(), "r": set()}
        for s in synsets:
            pos = "a" if s.pos == "s" else s.pos
            for lemma in s.lemmas:
                if "_" not in lemma and lemma.isalpha():
                    by_pos.setdefault(pos, set()).add(lemma.lower())
        return cls(
            frozenset(by_pos["n"]),
            frozenset(by_pos["v"]),
            frozenset(by_pos["a"]),
            frozenset(by_pos["r"]),
        )

    def is_noun(self, word: str) -> bool:
        if word in self.nouns:
            return True
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
            if word.endswith(suffix) and word[: -len(suffix)] + repl in self.nouns:
                return True
        return False

    def is_modifier(self, word: str) -> bool:
        return word in self.adjectives or self.is_noun(word) or bool(re.match(r"^\w+-\w+", word))


# Verbs that start a man-page or package one-liner as an imperative even though they are
# nouns too ("list directory contents", "copy files and directories").
COMMAND_VERBS = frozenset(
    """add adjust allocate analyse analyze append apply archive assemble attach backup benchmark
    bind block boot browse build burn calculate call cancel capture change check clean clear
    clone close collect combine commit compare compile compress compute configure connect control
    convert copy count create crop cut debug decode decompress decrypt define delete deploy detach
    detect determine diff disable discover display download draw dump duplicate edit emulate
    enable encode encrypt erase evaluate examine execute exit expand export extract fetch filter
    find fix flush fold fork format forward free generate get grep handle hash identify import
    index initialize insert inspect install join kill label launch link list listen load locate
    lock log look lookup make manage manipulate map mark measure merge migrate mirror modify
    monitor mount move notify open optimize pack parse paste patch pause ping play plot poll
    post prepare print probe process profile push put query queue read rebuild receive record
    reduce refresh register reload remove rename render reorder repair replace report request
    reset resize resolve restart restore resume retrieve return reverse rotate route run sample
    save scale scan schedule search select send serve set setup share show shrink shut sign
    simulate sleep sort spawn split start stat stop store stream strip submit summarize suspend
    switch sync synchronize tag tail take test time trace track transfer transform translate
    truncate tune type uncompress undo uninstall unlink unlock unmount unpack update upgrade upload
    validate verify view wait watch wrap write""".split()
)
_IRREGULAR_3RD = {"be": "is", "have": "has", "do": "does", "go": "goes"}
_ARTICLES = ("a ", "an ", "the ")
_NOT_ACRONYM = re.compile(r"^[A-Z][a-z]")


def _lines(block: str) -> list[str]:
    """Templates written one per line."""
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def third_person(verb: str) -> str:
    """copy → copies, push → pushes, list → lists, go → goes."""
    if verb in _IRREGULAR_3RD:
        return _IRREGULAR_3RD[verb]
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    if re.search(r"(?:s|x|z|ch|sh|o)$", verb):
        return verb + "es"
    return verb + "s"


# Stress on the last syllable: the consonant doubles (format → formatting).
_DOUBLED = frozenset(
    """format submit commit permit omit emit admit transmit refer prefer occur control forget
    begin regret equip unzip remit upset offset compel propel patrol""".split()
)


def gerund(verb: str) -> str:
    """copy → copying, make → making, run → running, list → listing."""
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    if (re.fullmatch(r"[^aeiou]*[aeiou][bdgmnprt]", verb) and len(verb) <= 4) or (verb in _DOUBLED):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _lower_first(text: str) -> str:
    """Lowercase the first letter unless the text starts with an acronym or a name
    ("UTF-8 ...", "OpenSSH ...", "United States ...")."""
    words = text.split()
    if not words:
        return text
    first = words[0]
    if len(first) > 1 and (first.isupper() or re.search(r"[A-Z]", first[1:])):
        return text
    if len(words) > 1 and words[1][:1].isupper() and first[:1].isupper():
        return text
    return text[0].lower() + text[1:]


_PREPOSITIONS = frozenset("for of to with in on from by as at into over under".split())


def _article(phrase: str) -> str:
    """ "a"/"an" + phrase; a plural head noun ("data mining algorithms") gets none."""
    words = phrase.split()
    word = words[0].lower() if words else ""
    if not word:
        return phrase
    head = words[0]
    for w in words:
        if w.lower() in _PREPOSITIONS:
            break
        head = w
    if re.search(r"[a-z]s$", head) and not re.search(r"(?:ss|us|is|ics)$", head.lower()):
        return phrase
    vowel = word[0] in "aeiou" and not word.startswith(("uni", "use", "usu", "one", "eu"))
    if word.isupper() and len(word) <= 5:  # acronyms by their first letter's sound
        vowel = word[0] in "aefhilmnorsx"
    return ("an " if vowel else "a ") + phrase


def _first_clause(text: str, max_words: int = 18) -> str:
    clause = re.split(r";|\s--\s|:\s| - ", text, maxsplit=1)[0].strip(" .,")
    words = clause.split()
    if len(words) > max_words:
        return ""
    return clause


def leaks(text: str, answer: str, stem: bool = True) -> bool:
    """True when a word of ``answer`` is in ``text``; with ``stem`` also a word starting with
    its stem (``run`` → "running"), for dictionary terms. Tokens split at any non-alphanumeric
    character, so ``tar`` leaks in "tar.gz"."""
    text_tokens = set(re.findall(r"[a-z0-9]+", text.lower()))
    for word in re.findall(r"[a-z0-9]+", answer.lower()):
        if word in STOPWORDS:
            continue
        if word in text_tokens:
            return True
        if stem and len(word) >= 4:
            prefix = word[: max(4, len(word) - 2)]
            if any(t.startswith(prefix) for t in text_tokens):
                return True
        elif (
            stem and len(word) == 3 and any(t.startswith(word) and len(t) <= 7 for t in text_tokens)
        ):
            return True
    return False


def surface(text: str, rng: random.Random, kind: str) -> str:
    """Casing and punctuation the way people type queries: mostly lowercase, '?' or not."""
    text = text.strip()
    if kind == "question":
        r = rng.random()
        if r < 0.6:
            text += "?"
        elif r < 0.64:
            text += " ?"
        elif r < 0.66:
            text += "??"
    r = rng.random()
    if r < 0.3:
        text = text[:1].upper() + text[1:]
    elif r < 0.47:
        text = text.lower()
    elif r < 0.48 and word_count(text) <= 8:
        text = text.upper()
    elif r < 0.5 and kind != "question":
        text = " ".join(w[:1].upper() + w[1:] for w in text.split())
    return text


def _pick(rng: random.Random, templates: list[str], k: int) -> list[str]:
    return rng.sample(templates, min(k, len(templates)))


def _fill(template: str, **slots: str) -> str:
    return " ".join(template.format(**slots).split())


def _generate(
    rng: random.Random,
    kind: str,
    group: str,
    templates: list[str],
    k: int,
    slots: dict[str, str],
    answer: str | None = None,
    stem: bool = True,
) -> list[Gen]:
    """Up to ``k`` texts from distinct templates; with ``answer`` a leaking fill is skipped."""
    out: list[Gen] = []
    order = list(dict.fromkeys(rng.sample(templates, len(templates))))
    for template in order:
        if len(out) >= k:
            break
        try:
            text = _fill(template, **slots)
        except KeyError:
            continue
        if answer is not None and leaks(text, answer, stem):
            continue
        out.append(Gen(kind, surface(text, rng, kind), f"{group}:{template}"))
    return out


# ----------------------------------------------------------------------- keyword chunking
def keyword_spans(text: str, lexicon: Lexicon, min_len: int = 2, max_len: int = 5) -> list[str]:
    """Noun-ish chunks: runs of adjective/noun words ending in a noun (``tar archiving tool``)."""
    spans: list[str] = []
    run: list[str] = []
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#'-]*|[^\sA-Za-z]+", text)

    def close() -> None:
        while run and not lexicon.is_noun(run[-1].lower()):
            run.pop()
        while run and run[0].lower() in STOPWORDS:
            run.pop(0)
        if min_len <= len(run) <= max_len:
            spans.append(" ".join(run))
        elif len(run) > max_len:
            spans.append(" ".join(run[-max_len:]))
        run.clear()

    for word in words:
        lowered = word.lower()
        if (
            word[0].isalpha()
            and lowered not in STOPWORDS
            and (lexicon.is_modifier(lowered) or lowered.endswith("ing"))
            and not (lowered in lexicon.verbs and lowered not in lexicon.nouns and not run)
        ):
            run.append(word)
        else:
            close()
    close()
    return list(dict.fromkeys(spans))


# ------------------------------------------------------------------------ how-to phrasing
_HOWTO_PATTERNS = [
    re.compile(
        r"\b(?:allows?|enables?|lets|helps?|permits?)\s+(?:you|users?|one|the user|"
        r"administrators?|developers?|people|programs?|applications?)\s+(?:to\s+)?"
        r"(?P<vp>[a-z][^.;:()]{6,90}?)(?=[.;:()]|$)",
        re.I,
    ),
    re.compile(
        r"\b(?:can|could)\s+be\s+used\s+to\s+(?P<vp>[a-z][^.;:()]{6,90}?)(?=[.;:()]|$)", re.I
    ),
    re.compile(
        r"\bis\s+(?:used|designed|intended|meant)\s+to\s+(?P<vp>[a-z][^.;:()]{6,90}?)(?=[.;:()]|$)",
        re.I,
    ),
    re.compile(
        r"\b(?:makes?\s+it\s+(?:easy|possible|simple)\s+to)\s+"
        r"(?P<vp>[a-z][^.;:()]{6,90}?)(?=[.;:()]|$)",
        re.I,
    ),
    re.compile(
        r"\b(?:a|the)\s+(?:tool|utility|program|command|library|way|script|daemon|"
        r"application)\s+(?:to|for\s+\w+ing)\s+(?P<vp>[a-z][^.;:()]{6,90}?)(?=[.;:()]|$)",
        re.I,
    ),
]
_DEICTIC = re.compile(r"\b(?:this|that|these|those|it|them|such|above|below|former|latter)\b", re.I)
_PRONOUNS = [
    (re.compile(r"\bone's\b"), "my"),
    (re.compile(r"\boneself\b"), "myself"),
    (re.compile(r"\byour\b"), "my"),
    (re.compile(r"\byou\b"), "me"),
]


def _my(text: str) -> str:
    for pattern, repl in _PRONOUNS:
        text = pattern.sub(repl, text)
    return text


def how_to_phrases(text: str, lexicon: Lexicon) -> list[str]:
    """Verb phrases a sentence says something is for: "allows you to X" → "X"."""
    out: list[str] = []
    for pattern in _HOWTO_PATTERNS:
        for m in pattern.finditer(text):
            vp = re.split(r",|\band\s+(?:is|are|it|its|the)\b|\bwhich\b|\bwhile\b", m.group("vp"))[
                0
            ]
            vp = vp.strip(" ,")
            first = vp.split()[0].lower() if vp.split() else ""
            if _DEICTIC.search(vp):
                continue  # "change this default": meaningless out of its sentence
            if 2 <= word_count(vp) <= 12 and (first in lexicon.verbs or first in COMMAND_VERBS):
                out.append(vp)
    return list(dict.fromkeys(out))


def _base_form(phrase: str, lexicon: Lexicon) -> str | None:
    """ "sends and receives a message" → "send and receive a message" (else ``None``)."""
    words = phrase.split()
    first = words[0].lower() if words else ""
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if first.endswith(suffix) and not first.endswith("ss"):
            base = first[: -len(suffix)] + repl
            if base in COMMAND_VERBS or base in lexicon.verbs:
                out = [base, *words[1:]]
                for i in range(1, len(out) - 1):
                    if out[i] in {"and", "or"}:
                        nxt = _base_form(out[i + 1], lexicon)
                        if nxt is not None:
                            out[i + 1] = nxt
                return " ".join(out)
    return None


def _gerund_slot(vp: str) -> dict[str, str]:
    """``{"ving": ...}`` when the phrase starts with a plain word ("view, set ..." has none)."""
    first = vp.split()[0] if vp.split() else ""
    return {"ving": _gerund_phrase(vp)} if first.isalpha() else {}


def _imperative(summary: str, lexicon: Lexicon) -> bool:
    words = summary.split()
    if len(words) < 2:
        return False
    first = words[0].lower().strip(",;:")
    if first in COMMAND_VERBS:
        return True
    return first in lexicon.verbs and not lexicon.is_noun(first) and first not in STOPWORDS


def _third_person_phrase(vp: str, lexicon: Lexicon) -> str:
    """ "open and possibly create a file" → "opens and possibly creates a file"."""
    words = vp.split()
    words[0] = third_person(words[0].lower())
    for i in range(1, len(words) - 1):
        if words[i] in {"and", "or"} or words[i].endswith(","):
            j = i + 1
            if j < len(words) and words[j] in {"possibly", "optionally", "then", "also"}:
                j += 1
            nxt = words[j].lower() if j < len(words) else ""
            if nxt in COMMAND_VERBS or (nxt in lexicon.verbs and not lexicon.is_noun(nxt)):
                words[j] = third_person(nxt)
    return " ".join(words)


def _gerund_phrase(vp: str) -> str:
    words = vp.split()
    return " ".join([gerund(words[0].lower()), *words[1:]])


# -------------------------------------------------------------------- dictionary entries
_FORWARD = _lines(
    """
    what is {a_t}
    what's {a_t}
    what is the meaning of {t}
    what does {t} mean
    what does the word {t} mean
    {t} meaning
    {t} definition
    define {t}
    definition of {t}
    meaning of {t}
    {t} means what
    what is meant by {t}
    explain {t}
    {t} in simple terms
    can you explain what {t} means
    {t} synonym
    synonyms for {t}
    another word for {t}
    how to use {t} in a sentence
    is {t} a word
    example of {t}
    {t} example sentence
    where does the word {t} come from
    why is it called {t}
    what is the origin of {t}
    {t} dictionary
    {t} meaning in english
    what do they mean by {t}
    what is {t} mean
    what means {t}
    what does {t} refer to
    how would you define {t}
    the meaning of the word {t}
    """
)
_FORWARD_PAIR = _lines(
    """
    {t} vs {u}
    difference between {t} and {u}
    is {t} the same as {u}
    what is the difference between {t} and {u}
    {t} or {u}
    does {t} mean {u}
    """
)
_FORWARD_POS = {
    "v": _lines(
        """
        what does it mean to {t}
        how do you {t}
        what does {t} mean as a verb
        {t} verb meaning
        what happens when you {t}
        why do people {t}
        """
    ),
    "a": _lines(
        """
        what does it mean to be {t}
        what does {t} mean when describing someone
        {t} adjective meaning
        is it good to be {t}
        """
    ),
    "r": _lines(
        """
        what does {t} mean in a sentence
        how to use the word {t}
        """
    ),
    "person": _lines(
        """
        who was {t}
        who is {t}
        {t} biography
        what is {t} known for
        why is {t} famous
        """
    ),
    "place": _lines(
        """
        where is {t}
        where is {t} located
        {t} location
        what is {t} known for
        """
    ),
    "foldoc": _lines(
        """
        what is {t} in computing
        {t} computer science
        {t} programming
        what is {t} used for
        how does {t} work
        {t} in computer terms
        what does {t} mean in computing
        {t} explained
        why use {t}
        """
    ),
    "jargon": _lines(
        """
        what does {t} mean in hacker slang
        {t} jargon
        {t} hacker meaning
        what is {t} slang for
        {t} slang
        where does the term {t} come from
        """
    ),
    "vera": _lines(
        """
        what does {t} stand for
        {t} acronym
        {t} abbreviation
        what is {t} short for
        {t} stands for
        full form of {t}
        {t} meaning in computing
        what does the acronym {t} mean
        expand {t}
        """
    ),
}
_REVERSE = {
    "n": _lines(
        """
        what do you call {d}
        what is the word for {d}
        word for {d}
        what's the term for {d}
        term for {d}
        what is {d} called
        name for {d}
        what is the name for {d}
        one word for {d}
        is there a word for {d}
        what is the technical term for {d}
        {d} is called
        {d} word
        {d}
        what do we call {d}
        the word for {d}
        """
    ),
    "v": _lines(
        """
        what verb means to {d}
        word that means to {d}
        what's the word for when you {d}
        one word for to {d}
        what is it called when you {d}
        how do I {dmy}
        how to {d}
        how can I {dmy}
        verb for {d}
        what is a word for {dg}
        """
    ),
    "a": _lines(
        """
        what is a word for {d}
        a word meaning {d}
        adjective for {d}
        what is the adjective for {d}
        word to describe something {d}
        describing word for {d}
        """
    ),
    "r": _lines(
        """
        what is a word for {d}
        adverb meaning {d}
        one word for {d}
        """
    ),
    "vera": _lines(
        """
        abbreviation for {d}
        what is the acronym for {d}
        {d} acronym
        {d} abbreviation
        how do you abbreviate {d}
        short form of {d}
        """
    ),
    "foldoc": _lines(
        """
        what is the term for {d}
        computing term for {d}
        what do you call {d}
        {d} in computing
        {d} is called what
        """
    ),
}
_PLACE_WORDS = re.compile(
    r"\b(?:city|town|country|river|state|region|island|mountain|capital|"
    r"port|province|lake|sea|peninsula|county|village|desert)\b"
)
_PERSON_YEARS = re.compile(r"\(\d{3,4}-\d{2,4}\)|\(born \d{4}\)")


def _display_term(term: str) -> str:
    return term.replace("_", " ").strip()


def entry_texts(
    entry: Entry,
    rng: random.Random,
    lexicon: Lexicon,
    n_forward: int = 1,
    n_reverse: int = 1,
    n_keywords: int = 1,
) -> list[Gen]:
    """Questions about a term (forward), questions its definition answers with the term
    (reverse, never naming it), and keyword queries cut from its definition."""
    t = _display_term(entry.term)
    if not t or not entry.definitions or word_count(t) > 6:
        return []
    definition = entry.definitions[0]
    if entry.source == "gcide" and not t.isupper():
        t = t.lower()  # GCIDE capitalizes every headword; names read fine in lowercase
    proper = t[:1].isupper() and _NOT_ACRONYM.match(t) is not None
    pos = entry.pos
    out: list[Gen] = []
    slots = {"t": t if proper or t.isupper() else t.lower(), "a_t": ""}
    slots["a_t"] = slots["t"] if proper or t.isupper() else _article(slots["t"])
    forward = _FORWARD[:]
    if entry.source in _FORWARD_POS:
        forward = _FORWARD_POS[entry.source] * 2 + forward[:12]
    elif proper and _PERSON_YEARS.search(definition):
        forward = _FORWARD_POS["person"] * 2 + ["what is {t}", "{t}"]
    elif proper and _PLACE_WORDS.search(definition.lower()):
        forward = _FORWARD_POS["place"] * 2 + ["what is {t}", "{t} meaning"]
    elif pos in _FORWARD_POS:
        forward = forward + _FORWARD_POS[pos] * 2
    out += _generate(rng, "question", f"{entry.source}-forward", forward, n_forward, slots)
    if entry.synonyms and rng.random() < 0.3:
        u = _display_term(rng.choice(entry.synonyms))
        if u.lower() != t.lower():
            pair = {"t": slots["t"], "u": u if u[:1].isupper() else u.lower()}
            out += _generate(rng, "question", f"{entry.source}-pair", _FORWARD_PAIR, 1, pair)

    clause = _first_clause(definition)
    if clause and word_count(clause) >= 3 and n_reverse:
        d = _lower_first(clause)
        reverse_key = entry.source if entry.source in {"vera", "foldoc"} else (pos or "n")
        templates = _REVERSE.get(reverse_key, _REVERSE["n"])
        rslots = {"d": d, "dmy": _my(d), "dg": d}
        if reverse_key == "v" and d.split():
            first = d.split()[0]
            rslots["dg"] = _gerund_phrase(d) if first.isalpha() else d
        out += _generate(
            rng, "question", f"{entry.source}-reverse", templates, n_reverse, rslots, answer=t
        )

    if n_keywords:
        spans = keyword_spans(definition, lexicon)
        rng.shuffle(spans)
        for span in spans[:n_keywords]:
            form = rng.choice(["{s}", "{t} {s}", "{s} {t}", "{s}"])
            text = _fill(form, s=span.lower(), t=slots["t"])
            out.append(Gen("keyword", surface(text, rng, "keyword"), f"{entry.source}-kw:{form}"))
    return out


# ---------------------------------------------------------------------------- man pages
_MAN_NAME = _lines(
    """
    man {n}
    {n} example
    {n} examples
    {n} man page
    {n} documentation
    how to use {n}
    what is {n} used for
    what is {n}
    {n} usage
    how does {n} work
    {n} vs {m}
    difference between {n} and {m}
    {n} tutorial
    {n} explained
    """
)
_MAN_NAME_SECTION = {
    "1": _lines(
        """
        what does the {n} command do
        what is {n} in linux
        {n} command
        {n} options
        {n} linux command
        {n} syntax
        how do I use the {n} command
        {n} flags
        {n} command explained
        why does {n} fail
        why does {n} say permission denied
        {n} command not found
        where is {n} installed
        is {n} installed by default
        {n} cheat sheet
        can I use {n} in a script
        {n} command line arguments
        """
    ),
    "2": _lines(
        """
        what does the {n} system call do
        {n} syscall
        {n} system call example
        {n} return value
        {n} errno
        why does {n} return -1
        {n} linux kernel
        is {n} thread safe
        how to call {n} from c
        {n} EINVAL
        """
    ),
    "3": _lines(
        """
        what does the {n} function do
        {n} function in c
        {n} return value
        {n} header file
        which header declares {n}
        {n} example in c
        is {n} thread safe
        how to use {n} in c
        {n} c library
        {n} arguments
        {n} function signature
        """
    ),
    "4": _lines(
        """
        {n} driver
        what is the {n} driver
        {n} device driver
        {n} device
        which hardware does {n} support
        how to load the {n} driver
        """
    ),
    "5": _lines(
        """
        {n} file format
        where is the {n} file
        {n} configuration file
        what goes in {n}
        how to edit {n}
        {n} config example
        {n} file syntax
        """
    ),
    "7": _lines(
        """
        {n} overview
        what is {n} in linux
        {n} concepts
        """
    ),
    "8": _lines(
        """
        how to run {n} as root
        {n} admin command
        {n} requires root
        {n} command
        what does {n} do in linux administration
        {n} options
        {n} daemon
        {n} command not found
        how do I use {n}
        """
    ),
    "9": _lines(
        """
        what does the {n} kernel function do
        {n} kernel api
        {n} return value
        how to use {n} in a driver
        {n} freebsd kernel
        is {n} safe to call with a lock held
        """
    ),
}
_MAN_NAME_SECTION["6"] = _MAN_NAME_SECTION["1"] + ["how to play {n}", "{n} game"]
_MAN_TASK = _lines(
    """
    how do I {vp}
    how to {vp}
    how can I {vp} in linux
    how can I {vp} on linux
    how do I {vp} from the command line
    what command is used to {vp}
    command to {vp}
    linux command to {vp}
    {vp} command
    {vp} command line
    {vp} linux
    is there a command to {vp}
    best way to {vp} on linux
    which command {vp3}
    what is the command that {vp3}
    {vp} in terminal
    can I {vp} from the shell
    how to {vp} in bash
    how to {vp} on ubuntu
    how to {vp} on debian
    tool for {ving}
    utility for {ving}
    shell command for {ving}
    {ving} in linux
    how do you {vp} in unix
    unix command to {vp}
    i need to {vp}
    {vp}
    """
)
_MAN_TASK_SECTION = {
    "2": _lines(
        """
        system call to {vp}
        which system call {vp3}
        how do I {vp} in C
        linux syscall that {vp3}
        how to {vp} in c on linux
        c function to {vp}
        """
    ),
    "3": _lines(
        """
        c function to {vp}
        which function {vp3}
        how do I {vp} in C
        library function to {vp}
        how to {vp} in c
        c library call that {vp3}
        what function do I call to {vp}
        posix function to {vp}
        """
    ),
    "5": _lines(
        """
        which file {vp3}
        config file to {vp}
        """
    ),
}
_MAN_NOUN = _lines(
    """
    which command is {sa}
    linux {s}
    {s} for the command line
    is there {sa} for linux
    {s} command
    {s} linux command
    command line {s}
    good {s} for linux
    {s} in unix
    """
)
# NAME lines of functions, drivers, file formats: no "command" wording.
_MAN_NOUN_OTHER = _lines(
    """
    linux {s}
    {s} in unix
    {s} api
    {s} documentation
    what provides {sa} on linux
    {s} freebsd
    {s} reference
    {s} man page
    """
)
_MAN_PACKAGE = _lines(
    """
    which package provides {n}
    how do I install {n}
    {n} package
    which debian package contains {n}
    apt install {n} command not found
    install {n} on debian
    """
)


def manpage_texts(
    page: ManPage,
    rng: random.Random,
    lexicon: Lexicon,
    n_name: int = 4,
    n_task: int = 3,
    n_keywords: int = 2,
) -> list[Gen]:
    """Questions about a command/function (by name), task questions its NAME one-liner
    answers (never naming it), description how-tos and keyword queries."""
    n = page.name
    s = page.summary.strip().rstrip(".")
    section = page.section[:1]
    out: list[Gen] = []
    others = [x for x in page.names if x != n]
    slots = {"n": n, "s": page.section, "m": others[0] if others else ""}
    name_templates = _MAN_NAME + _MAN_NAME_SECTION.get(section, []) * 3
    if not others:
        name_templates = [t for t in name_templates if "{m}" not in t]
    out += _generate(rng, "question", "man-name", name_templates, n_name, slots)
    # The other names of the NAME line (mostly .so links to this page) get questions too.
    for alias in [x for x in others if re.fullmatch(r"[\w.+:-]{2,60}", x)][:3]:
        aslots = {"n": alias, "s": page.section, "m": n}
        out += _generate(rng, "question", "man-alias", name_templates, 1, aslots)
    if page.package and page.package != n and section in {"1", "6", "8"} and rng.random() < 0.25:
        out += _generate(
            rng,
            "question",
            "man-package",
            _MAN_PACKAGE,
            1,
            {"n": n},
            answer=page.package,
            stem=False,
        )

    answer = " ".join([n, *page.names])
    summary = _lower_first(s)
    tasks: list[str] = []
    base = _base_form(summary, lexicon) if not _imperative(summary, lexicon) else None
    if base is not None and word_count(base) <= 14:
        tasks.append(base)  # "sends and receives a message" → "send and receive ..."
    elif _imperative(summary, lexicon) and word_count(summary) <= 14:
        tasks.append(summary)
    for paragraph in page.description[:3]:
        tasks += how_to_phrases(paragraph, lexicon)
    if tasks:
        templates = _MAN_TASK + _MAN_TASK_SECTION.get(section, []) * 3
        for i, vp in enumerate(tasks[:3]):
            vp = _lower_first(vp)
            tslots = {
                "vp": _my(vp),
                "vp3": _third_person_phrase(vp, lexicon),
                **_gerund_slot(vp),
            }
            k = n_task if i == 0 else 1
            out += _generate(
                rng, "question", "man-task", templates, k, tslots, answer=answer, stem=False
            )
    elif summary and word_count(summary) <= 12:
        bare = re.sub(r"^(?:an?|the)\s+", "", summary)
        sslots = {"s": bare, "sa": summary if summary.startswith(_ARTICLES) else _article(bare)}
        noun_templates = _MAN_NOUN if section in {"1", "6", "8"} else _MAN_NOUN_OTHER
        out += _generate(
            rng, "question", "man-noun", noun_templates, n_task, sslots, answer=answer, stem=False
        )

    if n_keywords:
        words = [w for w in content_words(s) if w != n.lower()][:4]
        forms = []
        if words:
            forms.append(f"{n} {' '.join(words)}")
            forms.append(f"{' '.join(words)} {rng.choice(['linux', 'command', 'unix', 'cli'])}")
        for paragraph in page.description[:2]:
            for span in keyword_spans(paragraph, lexicon)[:3]:
                forms.append(f"{n} {span.lower()}")
        rng.shuffle(forms)
        for text in forms[:n_keywords]:
            out.append(Gen("keyword", surface(text, rng, "keyword"), "man-kw"))
    if rng.random() < 0.15:
        forms = ["{n}({sec}) - {s}", "{n}({sec}) — Linux manual page", "{n} - {s}"]
        if section in {"1", "8"}:
            forms.append("The {n} Command")
        form = rng.choice(forms)
        out.append(Gen("title", form.format(n=n, sec=page.section, s=s), f"man-title:{form}"))
    return out


# ------------------------------------------------------------------------- Debian packages
_DEB_NAME = _lines(
    """
    what is {p}
    what is the {p} package
    what does {p} do
    {p} debian
    apt install {p}
    how do I install {p}
    how to install {p} on debian
    {p} package
    is {p} available for debian
    {p} ubuntu
    where does {p} install its files
    why can't I install {p}
    {p} dependencies
    how do I remove {p}
    {p} package description
    sudo apt-get install {p}
    {p} not found in apt
    what is {p} used for
    do I need {p}
    can I remove {p}
    is {p} safe to uninstall
    {p} deb
    how to configure {p}
    """
)
_DEB_REVERSE = _lines(
    """
    which package provides {sa}
    debian package for {s}
    is there a package for {s}
    install {s} on debian
    {s} for linux
    what package do I need for {s}
    linux {s}
    best {s} for linux
    apt package for {s}
    {s} debian package
    how do I get {s} on ubuntu
    which debian package contains {s}
    {s} apt
    where can I find {sa} for debian
    open source {s}
    is there {sa} in debian
    {s}
    recommend {sa} for linux
    what is a good {s}
    {s} package
    """
)
_DEB_TASK = _lines(
    """
    how do I {vp}
    how can I {vp} on linux
    how to {vp}
    which package lets me {vp}
    software to {vp}
    tool to {vp} on debian
    linux tool for {ving}
    app for {ving}
    is there a program to {vp}
    can I {vp} on ubuntu
    package to {vp}
    {ving} software
    """
)
_DEB_SECTION = {
    "libdevel": _lines(
        """
        {b} development headers
        {b} dev package
        headers for {b}
        how to link against {b}
        {b} include files
        """
    ),
    "games": _lines(
        """
        {b} game
        how to play {b}
        {b} linux game
        """
    ),
    "fonts": _lines(
        """
        {b} font
        how to install {b} font
        """
    ),
}
_PAREN_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")
# "... - library", "... - Python 3 module", "... -- documentation": a packaging qualifier.
_DASH_SUFFIX = re.compile(r"\s+--?\s+\S+(?:\s+\S+){0,2}$")
# "tool to convert X", "library for parsing Y" → the task ("convert X", "parse Y").
_TOOL_TO = re.compile(
    r"^(?:an?\s+|the\s+)?(?:(?:simple|small|lightweight|fast|tiny|command-line|cli|gui|python|perl)"
    r"\s+)?(?:package|tool|library|program|utility|script|module|application|app|daemon|command|"
    r"plugin|extension|helper|wrapper)s?\s+to\s+(\w.*)$",
    re.I,
)


def debian_texts(
    pkg: DebPackage,
    rng: random.Random,
    lexicon: Lexicon,
    n_name: int = 2,
    n_reverse: int = 1,
    n_task: int = 1,
    n_keywords: int = 1,
) -> list[Gen]:
    """Questions about a package (by name), questions its short description answers (never
    naming it), how-tos from its long description, keyword queries."""
    p = pkg.name
    out = _generate(rng, "question", "deb-name", _DEB_NAME, n_name, {"p": p})
    base = re.sub(r"^lib|-dev$|-doc$|-utils$|-common$|-data$", "", p)
    section = pkg.section.split("/")[-1]
    if section in _DEB_SECTION and rng.random() < 0.3:
        out += _generate(rng, "question", f"deb-{section}", _DEB_SECTION[section], 1, {"b": base})
    short = _DASH_SUFFIX.sub("", _PAREN_SUFFIX.sub("", pkg.short).strip()).rstrip(".")
    short = _lower_first(short)
    if short and word_count(short) <= 12:
        answer = " ".join([p, base])
        task = _TOOL_TO.match(short)
        if task is not None or _imperative(short, lexicon):
            vp = task.group(1) if task is not None else short
            slots = {"vp": _my(vp), **_gerund_slot(vp)}
            out += _generate(
                rng, "question", "deb-task", _DEB_TASK, n_reverse, slots, answer, False
            )
        else:
            sa = short if short.startswith(_ARTICLES) else _article(short)
            slots = {"s": re.sub(r"^(?:an?|the)\s+", "", short), "sa": sa}
            out += _generate(
                rng, "question", "deb-reverse", _DEB_REVERSE, n_reverse, slots, answer, False
            )
    if n_task:
        tasks: list[str] = []
        for paragraph in pkg.long[:3]:
            tasks += how_to_phrases(paragraph, lexicon)
        for vp in tasks[:n_task]:
            vp = _lower_first(vp)
            slots = {"vp": _my(vp), **_gerund_slot(vp)}
            out += _generate(rng, "question", "deb-howto", _DEB_TASK, 1, slots, p, False)
    if n_keywords:
        words = [w for w in content_words(short) if w != p.lower()][:4]
        forms = []
        if words:
            forms += [
                f"{p} {' '.join(words)}",
                f"{' '.join(words)} {rng.choice(['debian', 'linux', 'package', 'apt'])}",
            ]
        for paragraph in pkg.long[:1]:
            forms += [span.lower() for span in keyword_spans(paragraph, lexicon)[:3]]
        rng.shuffle(forms)
        for text in forms[:n_keywords]:
            out.append(Gen("keyword", surface(text, rng, "keyword"), "deb-kw"))
    if short and rng.random() < 0.1:
        words = [w[:1].upper() + w[1:] if w not in STOPWORDS else w for w in short.split()]
        form = rng.choice(["{p}: {t}", "{t} ({p})", "{p} - {t}", "Debian -- Package: {p} - {t}"])
        title = form.format(p=p, t=" ".join(words)[:1].upper() + " ".join(words)[1:])
        out.append(Gen("title", title, f"deb-title:{form}"))
    return out


# -------------------------------------------------------------------------------- prose
_PROSE_Q = _lines(
    """
    what did {who} say about {c}
    {who} on {c}
    {year} state of the union {c}
    {c} state of the union
    president {who} speech about {c}
    what was said about {c} in {year}
    {who} {c}
    """
)


def prose_texts(doc: ProseDoc, sentence: str, rng: random.Random, lexicon: Lexicon) -> list[Gen]:
    """Keyword chunks of a prose sentence; for a State of the Union one, a question too."""
    spans = keyword_spans(sentence, lexicon, 2, 4)
    if not spans:
        return []
    span = rng.choice(spans).lower()
    out = [Gen("keyword", surface(span, rng, "keyword"), f"{doc.source}-kw")]
    if doc.source == "sotu" and doc.meta.get("name"):
        slots = {"who": doc.meta["name"], "year": doc.meta.get("year", ""), "c": span}
        out += _generate(rng, "question", "sotu", _PROSE_Q, 1, slots)
    return out
