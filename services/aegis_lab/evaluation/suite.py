"""A multi-domain retrieval evaluation suite built from packages installable here.

WordNet usage→definition alone rewards shared words; real queries are questions, titles and
subjects matched against text written separately. Each task pairs human-written queries with
documents from the same source (the other documents are its distractors):

================  ==========  ==============================================================
task              query kind  query → relevant document
================  ==========  ==============================================================
wordnet           sentence    usage example → "lemma: definition" (Debian wordnet-base)
gcide             sentence    1913 Webster quotation → "headword: sense" (dict-gcide, GPL)
manpages          title       NAME one-liner → DESCRIPTION (manpages, git-man, ...)
debian-packages   title       package short description → long description (Translation-en)
email             title       e-mail subject → bodies of its thread (SpamAssassin ham, npm)
doc-sections      title       section title → its text (Debian Reference, kernel docs)
faq               question    FAQ question → its answer (39 human FAQs in Debian packages)
questions-built   question    "What does the `tar` command do?" → DESCRIPTION / long description
================  ==========  ==============================================================

Splits are by source item: a stable hash of (kind, unit) puts every source item (synset,
headword, man page, source package, e-mail thread, section, FAQ entry) in ``dev`` (30%) or
``test``, so no item is in both, in any task (a man page is in the same split in ``manpages``
and ``questions-built``). Sizes: ``full`` test 2,000 queries / 5,000 documents, dev 500 /
2,000 (fewer where the source has fewer; the task's ``notes`` say so); ``tiny`` is 40 / 150
drawn from the full set of the same split (for CI). Sampling is seeded and inputs sorted, so a
task is deterministic for given package versions.

Label hygiene: documents are de-duplicated by normalized text; identical queries merge their
relevant sets; a pair is dropped when the document contains the query verbatim or the
Jaccard overlap of their lowercase word sets exceeds ``NEAR_COPY_JACCARD`` (a near-copy: the
query restates the document). Built tasks are cached as JSON under
``cache_dir()/data/suite/`` keyed by the package versions, the settings and a digest of the
building code (so a changed rule rebuilds them).

``held_out_texts()`` / ``held_out_sources()`` list everything the suite uses (both splits) so
training corpora can exclude it; ``RESERVED_PACKAGES`` are never used here nor in training.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aegis_serve.cache import cache_dir, exclusive_lock

__all__ = [
    "DEV_FRACTION",
    "NEAR_COPY_JACCARD",
    "RESERVED_PACKAGES",
    "SIZES",
    "SOURCE_KINDS",
    "SUITE",
    "RetrievalTask",
    "assemble",
    "held_out_sources",
    "held_out_texts",
    "is_reserved_package",
    "jaccard",
    "load_suite",
    "load_task",
    "normalize_text",
    "split_of",
    "suite_stats",
]

SUITE: tuple[str, ...] = (
    "wordnet",
    "gcide",
    "manpages",
    "debian-packages",
    "email",
    "doc-sections",
    "faq",
    "questions-built",
)
SPLITS = ("dev", "test")
# (queries, documents) per split and size; a source with fewer items gives fewer.
SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "full": {"dev": (500, 2000), "test": (2000, 5000)},
    "tiny": {"dev": (40, 150), "test": (40, 150)},
}
DEV_FRACTION = 0.3
# Near-copy threshold on the word-set Jaccard of a query and its relevant document. Measured on
# all candidate pairs: the median is 0.05-0.10 in every task and the 99th percentile 0.25-0.45;
# hand-checked pairs above 0.4 were restatements ("report memory map of a process" -> "The
# pmap command reports the memory map of a process ..."; "JSON Web Token and its family in
# Ruby" -> the same words plus a parenthesis), which a short query and a document a few times
# longer cannot reach by merely sharing the topic's terms. Dropping them costs at most 1.5% of
# the candidates (debian-packages), 0.6% (manpages), 0.4% (wordnet), < 0.1% elsewhere.
NEAR_COPY_JACCARD = 0.4
SUITE_FORMAT = 1  # part of the cache key (with the building code's digest) and of the seeds
SOURCE_KINDS = (
    "wordnet-synset",
    "gcide-headword",
    "manpage",
    "debian-package",
    "email",
    "doc-section",
    "faq",
)

# Kept for independent checks: never read by the suite, never used for training.
RESERVED_PACKAGES: tuple[str, ...] = (
    "perl-doc",
    "perl-doc-html",
    "python3-doc",
    "python3.11-doc",
    "python3.12-doc",
    "python3.13-doc",
    "python-doc",
    "debian-faq",
    "debian-faq-de",
    "debian-faq-fr",
    "debian-faq-it",
    "debian-faq-ru",
    "debian-faq-zh-cn",
    "doc-debian",
)
_RESERVED_PATTERNS = (re.compile(r"^python[0-9.]*-doc$"), re.compile(r"^debian-faq(-.*)?$"))


def is_reserved_package(name: str) -> bool:
    """perlfaq (``perl-doc``), the Python docs and their FAQ, the Debian FAQ."""
    return name in RESERVED_PACKAGES or any(p.match(name) for p in _RESERVED_PATTERNS)


@dataclass(frozen=True)
class RetrievalTask:
    name: str
    description: str
    source: str  # packages it came from (with versions)
    query_kind: str  # "question" | "title" | "sentence" | "keyword"
    split: str  # "dev" | "test"
    queries: list[str]
    documents: list[str]
    relevant: list[list[int]]
    notes: str = ""  # caps, drops, licence


# ------------------------------------------------------------------------------ text helpers
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Lowercase, whitespace collapsed, stripped."""
    return " ".join(text.lower().split())


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def jaccard(a: str, b: str) -> float:
    """Jaccard overlap of the lowercase word sets of two texts."""
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / len(wa | wb) if wa or wb else 0.0


def _contains(doc: str, query: str) -> bool:
    """The document contains the query verbatim (word-normalized)."""
    q = " ".join(_WORD.findall(query.lower()))
    return bool(q) and f" {q} " in f" {' '.join(_WORD.findall(doc.lower()))} "


def split_of(kind: str, unit: str) -> str:
    """``dev`` or ``test`` for a source unit: a stable hash, the same in every task."""
    digest = hashlib.sha256(f"{kind}\0{unit}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") / 2**64 < DEV_FRACTION else "test"


# ------------------------------------------------------------------------------ pools
@dataclass(frozen=True)
class Doc:
    """A candidate document; ``kind``/``unit`` decide its split, ``id`` is held out."""

    key: str
    text: str
    kind: str
    unit: str
    id: str


@dataclass(frozen=True)
class Pair:
    query: str
    relevant: tuple[str, ...]  # document keys
    kind: str
    unit: str
    id: str


@dataclass
class Pool:
    """Everything a task can draw from, before splitting and sampling."""

    description: str
    query_kind: str
    source: str
    docs: list[Doc]
    pairs: list[Pair]
    notes: list[str] = field(default_factory=list)


def assemble(
    pool: Pool, name: str, split: str, n_queries: int, n_docs: int, jaccard_max: float
) -> tuple[RetrievalTask, dict[str, Any], list[tuple[str, str]], list[str]]:
    """One split of a pool: (task, stats, held (kind, id) pairs, chosen query order).

    The split's documents are de-duplicated by normalized text, identical queries merged,
    near-copies dropped, then ``n_queries`` pairs sampled (seeded) and the corpus filled with
    distractors from the same split up to ``n_docs``.
    """
    docs: dict[str, Doc] = {}
    canonical: dict[str, str] = {}  # any key -> kept key of the same text
    by_text: dict[str, str] = {}
    for d in sorted(pool.docs, key=lambda d: d.key):
        if split_of(d.kind, d.unit) != split or not d.text.strip():
            continue
        norm = normalize_text(d.text)
        if norm in by_text:
            canonical[d.key] = by_text[norm]
            continue
        by_text[norm] = canonical[d.key] = d.key
        docs[d.key] = d
    merged: dict[str, tuple[Pair, set[str]]] = {}
    for p in sorted(pool.pairs, key=lambda p: (p.query, p.id)):
        if split_of(p.kind, p.unit) != split:
            continue
        rel = {canonical[k] for k in p.relevant if k in canonical}
        if not rel:
            continue
        norm = normalize_text(p.query)
        if norm in merged:
            merged[norm][1].update(rel)
        else:
            merged[norm] = (p, rel)
    kept: list[tuple[Pair, list[str]]] = []
    dropped = {"verbatim": 0, "near_copy": 0}
    for p, rel in merged.values():
        texts = [docs[k].text for k in rel]
        if any(_contains(t, p.query) for t in texts):
            dropped["verbatim"] += 1
        elif any(jaccard(p.query, t) > jaccard_max for t in texts):
            dropped["near_copy"] += 1
        else:
            kept.append((p, sorted(rel)))
    rng = random.Random(f"{name}:{split}:{SUITE_FORMAT}")
    order = list(range(len(kept)))
    rng.shuffle(order)
    chosen: list[tuple[Pair, list[str]]] = []
    rel_keys: set[str] = set()
    for i in order:
        if len(chosen) >= n_queries:
            break
        p, rel = kept[i]
        if len(rel_keys | set(rel)) > n_docs:
            continue
        chosen.append((p, rel))
        rel_keys.update(rel)
    others = sorted(k for k in docs if k not in rel_keys)
    distractors = rng.sample(others, min(len(others), n_docs - len(rel_keys)))
    corpus = sorted(rel_keys) + distractors
    rng.shuffle(corpus)
    index = {k: i for i, k in enumerate(corpus)}
    queries = [p.query for p, _ in chosen]
    relevant = [sorted(index[k] for k in rel) for _, rel in chosen]
    documents = [docs[k].text for k in corpus]
    held = sorted(
        {(p.kind, p.id) for p, _ in chosen} | {(docs[k].kind, docs[k].id) for k in corpus}
    )
    overlaps = [
        jaccard(q, documents[r]) for q, rels in zip(queries, relevant, strict=True) for r in rels
    ]
    stats = {
        "queries": len(queries),
        "documents": len(documents),
        "available_pairs": len(kept),
        "available_documents": len(docs),
        "dropped": dropped,
        "mean_query_words": _mean(len(q.split()) for q in queries),
        "mean_document_words": _mean(len(d.split()) for d in documents),
        "mean_relevant_per_query": _mean(len(r) for r in relevant),
        "mean_jaccard": round(_mean(overlaps), 4),
        "max_jaccard": round(max(overlaps, default=0.0), 4),
    }
    task = RetrievalTask(
        name=name,
        description=pool.description,
        source=pool.source,
        query_kind=pool.query_kind,
        split=split,
        queries=queries,
        documents=documents,
        relevant=relevant,
        notes="",
    )
    return task, stats, held, [p.id for p, _ in chosen]


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else 0.0


def _shrink(task: RetrievalTask, n_queries: int, n_docs: int, seed: str) -> RetrievalTask:
    """The first ``n_queries`` queries of a task (already in random order), their relevant
    documents and distractors from its corpus up to ``n_docs``: a subset of the task."""
    queries, relevant = task.queries[:n_queries], task.relevant[:n_queries]
    rel = sorted({i for r in relevant for i in r})
    while len(rel) > n_docs and queries:
        queries, relevant = queries[:-1], relevant[:-1]
        rel = sorted({i for r in relevant for i in r})
    rng = random.Random(seed)
    others = [i for i in range(len(task.documents)) if i not in set(rel)]
    picked = rel + rng.sample(others, min(len(others), n_docs - len(rel)))
    rng.shuffle(picked)
    new_index = {old: new for new, old in enumerate(picked)}
    return RetrievalTask(
        name=task.name,
        description=task.description,
        source=task.source,
        query_kind=task.query_kind,
        split=task.split,
        queries=list(queries),
        documents=[task.documents[i] for i in picked],
        relevant=[sorted(new_index[i] for i in r) for r in relevant],
        notes=task.notes,
    )


# ------------------------------------------------------------------------------ task pools
def _pick(seed: str, options: Sequence[str]) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _versions(dirs: dict[str, Path]) -> str:
    from aegis_lab.data.debian import debian_package_version

    return ", ".join(f"{n}={debian_package_version(d)}" for n, d in sorted(dirs.items()))


def _wordnet_key() -> str:
    from aegis_lab.data.debian import debian_package_version
    from aegis_lab.data.wordnet import DATA_FILES, SYSTEM_WORDNET_DIR, wordnet_dir

    directory = wordnet_dir()
    if directory == SYSTEM_WORDNET_DIR:
        sizes = "-".join(str((directory / f).stat().st_size) for f in DATA_FILES)
        return f"wordnet system copy {sizes}"
    return f"wordnet-base={debian_package_version(directory.parents[2])}"


def _wordnet_pool() -> Pool:
    from aegis_lab.data.wordnet import document_text, load_synsets, retrieval_candidates

    query_pool, usable, counts = retrieval_candidates(load_synsets())
    docs = [Doc(s.id, document_text(s), "wordnet-synset", s.id, s.id) for s in usable]
    pairs = []
    for s in query_pool:
        unique = sorted({e for e in s.examples if counts[e] == 1})
        example = _pick(s.id, unique)
        pairs.append(Pair(example, (s.id,), "wordnet-synset", s.id, s.id))
    return Pool(
        "WordNet 3.0 usage example -> 'lemma: definition' (one relevant synset)",
        "sentence",
        _wordnet_key(),
        docs,
        pairs,
        ["only synsets with a unique document text; only examples found in one synset"],
    )


def _gcide_pool() -> Pool:
    from aegis_lab.data.debian import debian_package_dir, debian_package_version
    from aegis_lab.data.gcide import PACKAGE, load_senses

    root = debian_package_dir(PACKAGE)
    senses = load_senses(root / "usr" / "share" / "dictd")
    docs, pairs = [], []
    for s in senses:
        if len(s.definition.split()) < 3:
            continue
        unit = s.headword.lower()
        docs.append(Doc(s.id, f"{s.headword}: {s.definition}", "gcide-headword", unit, unit))
        quotes = sorted(q for q in s.quotations if len(q.split()) >= 4 and "[" not in q)
        if quotes:
            quote = _pick(s.id, quotes)
            pairs.append(Pair(quote, (s.id,), "gcide-headword", unit, unit))
    return Pool(
        "GCIDE (1913 Webster) illustrative quotation -> 'headword: definition' of its sense; "
        "the headword's other senses are among the distractors",
        "sentence",
        f"{PACKAGE}={debian_package_version(root)}",
        docs,
        pairs,
        [
            "GPL-3+ data: built at run time into the cache, never committed",
            "one quotation (>= 4 words) per sense; senses with definitions < 3 words dropped",
        ],
    )


def _manpages() -> tuple[list[Any], str]:
    from aegis_lab.data.debian import debian_package_dirs
    from aegis_lab.data.manpages import MAN_PACKAGES, load_manpages

    dirs = debian_package_dirs(MAN_PACKAGES)
    pages = load_manpages(
        tqdm([(p, dirs[p]) for p in MAN_PACKAGES], desc="man pages", unit="pkg", leave=False)
    )
    return pages, _versions(dirs)


def _manpages_pool() -> Pool:
    pages, versions = _manpages()
    docs = [Doc(p.id, p.description, "manpage", p.id, p.id) for p in pages]
    pairs = [
        Pair(p.summary, (p.id,), "manpage", p.id, p.id)
        for p in pages
        if len(p.summary.split()) >= 2
    ]
    return Pool(
        "man page NAME one-liner (after ' - ') -> its DESCRIPTION section",
        "title",
        versions,
        docs,
        pairs,
        [
            "English pages of usr/share/man/man*/, .so redirects and links skipped, "
            "DESCRIPTION capped at 2,000 characters; a page name seen in an earlier package "
            "is skipped"
        ],
    )


def _descriptions() -> tuple[list[Any], str]:
    """One binary package per source package (the one named like the source, else the
    shortest name), reserved packages excluded, long descriptions of >= 15 words without the
    restated short description."""
    from aegis_lab.data.debian_descriptions import descriptions_key, load_descriptions

    chosen: dict[str, Any] = {}
    for d in load_descriptions():
        if is_reserved_package(d.package) or is_reserved_package(d.source):
            continue
        long = d.long
        if normalize_text(long).startswith(normalize_text(d.short)):
            long = long[len(d.short) :].lstrip(" .:;,\n")
        if len(long.split()) < 15:
            continue
        d = type(d)(d.package, d.source, d.short, long)
        best = chosen.get(d.source)
        rank = (d.package != d.source, len(d.package), d.package)
        if best is None or rank < (best.package != best.source, len(best.package), best.package):
            chosen[d.source] = d
    return sorted(chosen.values(), key=lambda d: d.package), f"Translation-en {descriptions_key()}"


def _debian_packages_pool() -> Pool:
    descs, key = _descriptions()
    docs = [Doc(d.package, d.long, "debian-package", d.source, d.package) for d in descs]
    pairs = [
        Pair(d.short, (d.package,), "debian-package", d.source, d.package)
        for d in descs
        if len(d.short.split()) >= 2
    ]
    return Pool(
        "Debian package short description -> long description (bookworm archive)",
        "title",
        f"Debian archive {key} (+ /var/lib/dpkg/status for installed packages)",
        docs,
        pairs,
        [
            "split and de-duplication unit is the source package: one binary package per "
            "source (siblings share their long description); the short description is "
            "removed from the long one when restated; long descriptions < 15 words dropped"
        ],
    )


def _email_pool() -> Pool:
    from aegis_lab.data.manpages import cap_text
    from aegis_lab.data.spam_assassin import NPM_PACKAGE, NPM_VERSION, load_messages

    threads: dict[str, list[Any]] = {}
    for m in load_messages():
        if len(m.subject.split()) >= 3 and len(m.body.split()) >= 20:
            threads.setdefault(m.thread, []).append(m)
    docs, pairs = [], []
    for thread, messages in sorted(threads.items()):
        for m in messages:
            docs.append(Doc(m.id, cap_text(m.body), "email", thread, m.id))
        first = min(messages, key=lambda m: (m.is_reply, m.id))
        pairs.append(Pair(first.subject, tuple(m.id for m in messages), "email", thread, first.id))
    return Pool(
        "e-mail subject -> the bodies of its thread (SpamAssassin public corpus, ham only)",
        "title",
        f"npm {NPM_PACKAGE}@{NPM_VERSION}",
        docs,
        pairs,
        [
            "spam dropped; headers, quoted replies, 'X wrote:' lines, signatures and list "
            "footers stripped; subjects without Re:/Fwd:/[list] tags, >= 3 words; bodies "
            ">= 20 words, capped at 2,000 characters; split unit is the thread (normalized "
            "subject), every message of the thread is relevant"
        ],
    )


def _doc_sections_pool() -> Pool:
    from aegis_lab.data.debian import debian_package_dirs
    from aegis_lab.data.doc_sections import DOC_KEEP, DOC_PACKAGES, load_doc_sections

    dirs = debian_package_dirs(DOC_PACKAGES, keep=DOC_KEEP)
    sections = load_doc_sections((p, dirs[p]) for p in DOC_PACKAGES)
    docs = [Doc(s.id, s.text, "doc-section", s.id, s.id) for s in sections]
    pairs = [Pair(s.title, (s.id,), "doc-section", s.id, s.id) for s in sections]
    return Pool(
        "documentation section title -> the text under it (Debian Reference, Linux kernel "
        "documentation)",
        "title",
        _versions(dirs),
        docs,
        pairs,
        [
            "generic titles (Introduction, Overview, Examples, ...), one-word titles, "
            "question titles and titles repeated within a manual dropped; text >= 15 words, "
            "capped at 2,000 characters; kernel translations and FAQ files skipped"
        ],
    )


def _faq_pool() -> Pool:
    from aegis_lab.data.debian import debian_package_dirs
    from aegis_lab.data.faq import FAQ_SOURCES, faq_packages, load_faqs

    packages = faq_packages()
    dirs = debian_package_dirs(packages)
    entries = list(load_faqs(dirs))
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.package] = counts.get(e.package, 0) + 1
    docs = [Doc(e.id, e.answer, "faq", e.id, e.id) for e in entries]
    pairs = [Pair(e.question, (e.id,), "faq", e.id, e.id) for e in entries]
    per_source = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
    return Pool(
        f"human-written FAQ question -> its answer ({len(FAQ_SOURCES)} FAQ files of "
        f"{len(packages)} Debian packages)",
        "question",
        _versions(dirs),
        docs,
        pairs,
        [
            f"entries per package: {per_source}",
            "questions end in '?', 3-40 words; answers >= 12 words, capped at 2,000 "
            "characters; perlfaq, the Python FAQ and the Debian FAQ are reserved (unused)",
        ],
    )


_COMMAND_TEMPLATES = (
    "What does the `{name}` command do?",
    "What is `{name}` used for?",
    "How do I use the `{name}` command?",
    "Why would I run `{name}`?",
    "What is the purpose of the `{name}` command?",
    "When should I use `{name}`?",
)
_FUNCTION_TEMPLATES = (
    "What does the `{name}()` function do?",
    "How do I use `{name}()`?",
    "What is `{name}()` for?",
    "Why would I call `{name}()`?",
    "What is the purpose of `{name}()`?",
)
_FILE_TEMPLATES = (
    "What is `{name}` about?",
    "What does the `{name}` manual page describe?",
    "How does `{name}` work?",
)
_PACKAGE_TEMPLATES = (
    "What is the `{name}` package for?",
    "What does the Debian package `{name}` provide?",
    "Why would I install `{name}`?",
    "What do I get if I install `{name}`?",
    "How is the `{name}` package used?",
    "What is `{name}` in Debian?",
)


def _man_question(page_id: str) -> str | None:
    name, _, section = page_id.rpartition(".")
    if not name:
        return None
    if section[:1] in {"1", "6", "8"}:
        templates = _COMMAND_TEMPLATES
    elif section[:1] in {"2", "3"}:
        templates = _FUNCTION_TEMPLATES
    elif section[:1] in {"4", "5", "7"}:
        templates = _FILE_TEMPLATES
    else:
        return None
    return _pick("man\0" + page_id, templates).format(name=name)


def _questions_built_pool() -> Pool:
    pages, man_versions = _manpages()
    descs, key = _descriptions()
    docs, man_pairs, pkg_pairs = [], [], []
    for p in pages:
        question = _man_question(p.id)
        docs.append(Doc(f"man:{p.id}", p.description, "manpage", p.id, p.id))
        if question is not None:
            man_pairs.append(Pair(question, (f"man:{p.id}",), "manpage", p.id, p.id))
    # As many package questions as man page questions, so neither source dominates; as many
    # package documents again as distractors.
    sample = random.Random(f"questions-built:{SUITE_FORMAT}").sample(
        descs, min(len(descs), 2 * len(man_pairs))
    )
    for i, d in enumerate(sample):
        docs.append(Doc(f"pkg:{d.package}", d.long, "debian-package", d.source, d.package))
        if i < len(man_pairs):
            question = _pick("pkg\0" + d.package, _PACKAGE_TEMPLATES).format(name=d.package)
            pkg_pairs.append(
                Pair(question, (f"pkg:{d.package}",), "debian-package", d.source, d.package)
            )
    return Pool(
        "questions built from a name only ('What does the `tar` command do?', 'What is the "
        "`libfoo-dev` package for?') -> that man page's DESCRIPTION / package's long "
        "description",
        "question",
        f"{man_versions}; Debian archive {key}",
        docs,
        man_pairs + pkg_pairs,
        [
            "BUILT, not human-phrased: templates (what/how/why/when) filled with the page or "
            "package name only, never words of the NAME line or short description; half man "
            "pages, half packages; same split units as manpages / debian-packages"
        ],
    )


_POOLS: dict[str, Callable[[], Pool]] = {
    "wordnet": _wordnet_pool,
    "gcide": _gcide_pool,
    "manpages": _manpages_pool,
    "debian-packages": _debian_packages_pool,
    "email": _email_pool,
    "doc-sections": _doc_sections_pool,
    "faq": _faq_pool,
    "questions-built": _questions_built_pool,
}


def _debian_versions(names: Iterable[str], keep: dict[str, tuple[str, ...]] | None = None) -> str:
    from aegis_lab.data.debian import debian_package_dirs

    return _versions(debian_package_dirs(names, keep))


def _gcide_key() -> str:
    from aegis_lab.data.gcide import PACKAGE

    return _debian_versions([PACKAGE])


def _man_key() -> str:
    from aegis_lab.data.manpages import MAN_PACKAGES

    return _debian_versions(MAN_PACKAGES)


def _descriptions_key() -> str:
    from aegis_lab.data.debian_descriptions import descriptions_key

    return descriptions_key()


def _email_key() -> str:
    from aegis_lab.data.spam_assassin import NPM_PACKAGE, NPM_VERSION

    return f"{NPM_PACKAGE}@{NPM_VERSION}"


def _doc_sections_key() -> str:
    from aegis_lab.data.doc_sections import DOC_KEEP, DOC_PACKAGES

    return _debian_versions(DOC_PACKAGES, DOC_KEEP)


def _faq_key() -> str:
    from aegis_lab.data.faq import FAQ_SOURCES, faq_packages

    return _debian_versions(faq_packages()) + repr(FAQ_SOURCES)


# What a task's cached build depends on (its packages' versions); fetches missing packages.
_KEYS: dict[str, Callable[[], str]] = {
    "wordnet": _wordnet_key,
    "gcide": _gcide_key,
    "manpages": _man_key,
    "debian-packages": _descriptions_key,
    "email": _email_key,
    "doc-sections": _doc_sections_key,
    "faq": _faq_key,
    "questions-built": lambda: _man_key() + _descriptions_key(),
}


# The code that turns packages into tasks: a change to it rebuilds the cached tasks.
_CODE_MODULES = (
    "aegis_lab.evaluation.suite",
    "aegis_lab.data.debian",
    "aegis_lab.data.debian_descriptions",
    "aegis_lab.data.doc_sections",
    "aegis_lab.data.faq",
    "aegis_lab.data.gcide",
    "aegis_lab.data.manpages",
    "aegis_lab.data.markup",
    "aegis_lab.data.spam_assassin",
    "aegis_lab.data.wordnet",
)


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    h = hashlib.sha256()
    for name in _CODE_MODULES:
        h.update(Path(importlib.import_module(name).__file__ or name).read_bytes())
    return h.hexdigest()[:16]


def _task_key(name: str) -> str:
    """Package versions, the suite's settings and the building code, hashed."""
    if name not in _KEYS or name not in _POOLS:
        raise ValueError(f"unknown task {name!r}; the suite has {', '.join(SUITE)}")
    settings = (SUITE_FORMAT, SIZES, DEV_FRACTION, NEAR_COPY_JACCARD, _code_digest())
    config = repr((settings, _KEYS[name]()))
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def _notes(pool: Pool, stats: dict[str, Any], split: str) -> str:
    want_q, want_d = SIZES["full"][split]
    short = []
    if stats["queries"] < want_q:
        short.append(f"{stats['queries']} queries (target {want_q}: the source has no more)")
    if stats["documents"] < want_d:
        short.append(f"{stats['documents']} documents (target {want_d}: the source has no more)")
    drops = stats["dropped"]
    lines = [
        *pool.notes,
        f"dropped as near-copies: {drops['verbatim']} (query verbatim in the document), "
        f"{drops['near_copy']} (word Jaccard > {NEAR_COPY_JACCARD})",
        *short,
    ]
    return "; ".join(lines)


def _build(name: str, started: float) -> dict[str, Any]:
    pool = _POOLS[name]()
    out: dict[str, Any] = {"name": name, "format": SUITE_FORMAT, "tasks": {}, "stats": {}}
    held: dict[str, list[list[str]]] = {}
    for split in SPLITS:
        n_q, n_d = SIZES["full"][split]
        task, stats, held_pairs, _ = assemble(pool, name, split, n_q, n_d, NEAR_COPY_JACCARD)
        task = RetrievalTask(**{**asdict(task), "notes": _notes(pool, stats, split)})
        t_q, t_d = SIZES["tiny"][split]
        tiny = _shrink(task, t_q, t_d, f"{name}:{split}:tiny")
        out["tasks"][f"{split}/full"] = asdict(task)
        out["tasks"][f"{split}/tiny"] = asdict(tiny)
        out["stats"][split] = stats
        held[split] = [list(p) for p in held_pairs]
    out["held"] = held
    out["build_seconds"] = round(time.perf_counter() - started, 1)  # downloads included
    return out


def _suite_dir() -> Path:
    return cache_dir() / "data" / "suite"


def _load_built(name: str) -> dict[str, Any]:
    started = time.perf_counter()
    path = _suite_dir() / f"{name}-{_task_key(name)}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    with exclusive_lock(_suite_dir() / f".{name}.lock", f"suite task {name}"):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        built = _build(name, started)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(built, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    return built


# ------------------------------------------------------------------------------ public API
def load_task(name: str, split: str = "test", size: str = "full") -> RetrievalTask:
    """One task of the suite (built once from its packages, then read from the cache)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    return RetrievalTask(**_load_built(name)["tasks"][f"{split}/{size}"])


def load_suite(
    split: str = "test", size: str = "full", tasks: Iterable[str] | None = None
) -> list[RetrievalTask]:
    """Every task (or ``tasks``) of the suite, in ``SUITE`` order by default."""
    names = list(tasks) if tasks is not None else list(SUITE)
    return [load_task(n, split, size) for n in tqdm(names, desc="suite", unit="task")]


def suite_stats(tasks: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per task: per-split statistics (counts, lengths, overlap, drops) and build time."""
    out = {}
    for name in tasks if tasks is not None else SUITE:
        built = _load_built(name)
        out[name] = {**built["stats"], "build_seconds": built["build_seconds"]}
    return out


def held_out_texts(tasks: Iterable[str] | None = None, splits: Iterable[str] = SPLITS) -> set[str]:
    """Every query and document text of every task, both splits, ``normalize_text``-ed."""
    splits = set(splits)
    out: set[str] = set()
    for name in tasks if tasks is not None else SUITE:
        for key, task in _load_built(name)["tasks"].items():
            if key.split("/")[0] in splits:
                out.update(normalize_text(t) for t in task["queries"])
                out.update(normalize_text(t) for t in task["documents"])
    return out


def held_out_sources(
    tasks: Iterable[str] | None = None, splits: Iterable[str] = SPLITS
) -> dict[str, set[str]]:
    """Source kind (``SOURCE_KINDS``) -> ids of the items used by any task in any split."""
    splits = set(splits)
    out: dict[str, set[str]] = {kind: set() for kind in SOURCE_KINDS}
    for name in tasks if tasks is not None else SUITE:
        for split, pairs in _load_built(name)["held"].items():
            if split in splits:
                for kind, item in pairs:
                    out.setdefault(kind, set()).add(item)
    return out
