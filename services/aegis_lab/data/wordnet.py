"""WordNet 3.0 from Debian's ``wordnet-base``: a permissive offline corpus for distillation + eval.

No dataset hub is reachable here, but the distribution's package archive is, so the data files
(``usr/share/wordnet/data.{noun,verb,adj,adv}``) come from the system copy or from
``aegis_lab.data.debian.debian_package_dir`` (``apt-get download wordnet-base`` and ``dpkg -x``
into the cache, once). Each synset gives a definition, its lemmas and quoted usage examples,
which yield both short distillation sentences and a labelled usage→definition retrieval task.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aegis_lab.data.debian import DebianPackageError, debian_package_dir

__all__ = [
    "DATA_FILES",
    "SYSTEM_WORDNET_DIR",
    "Synset",
    "distillation_sentences",
    "document_text",
    "load_synsets",
    "parse_data_file",
    "parse_data_line",
    "parse_gloss",
    "retrieval_candidates",
    "retrieval_set",
    "retrieval_synset_ids",
    "wordnet_dir",
]

SYSTEM_WORDNET_DIR = Path("/usr/share/wordnet")
DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_PACKAGE = "wordnet-base"
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")
# Usage examples start at the first `; "` (sometimes `: "` or `:"`) after the definition.
_EXAMPLES_START = re.compile(r'[;:]\s*"')
_QUOTED = re.compile(r'"([^"]*)"')


@dataclass
class Synset:
    """One WordNet synset; ``lemmas`` keep WordNet's underscores (``take_a_breath``)."""

    offset: str
    pos: str
    lemmas: list[str]
    definition: str
    examples: list[str]

    @property
    def id(self) -> str:
        """``offset-pos``: offsets are byte positions per file, so they repeat across POS."""
        return f"{self.offset}-{self.pos}"


def _has_data(directory: Path) -> bool:
    return all((directory / name).is_file() for name in DATA_FILES)


def wordnet_dir() -> Path:
    """Directory with WordNet's ``data.*`` files: the system copy, else a cached .deb unpack."""
    if _has_data(SYSTEM_WORDNET_DIR):
        return SYSTEM_WORDNET_DIR
    try:
        root = debian_package_dir(_PACKAGE)
    except DebianPackageError as exc:
        raise DebianPackageError(
            f"{exc}; or install it system-wide with `apt-get update && apt-get install -y "
            f"{_PACKAGE}` (gives {SYSTEM_WORDNET_DIR})"
        ) from exc
    directory = root / "usr/share/wordnet"
    if not _has_data(directory):
        raise DebianPackageError(f"{_PACKAGE} in {root} has no usr/share/wordnet/data.* files")
    return directory


def parse_gloss(gloss: str) -> tuple[str, list[str]]:
    """Split ``definition; "example"; "example"`` into the definition and the quoted examples.

    Quotes inside the definition (``as in "carrot and stick"``) stay in it; attributions after
    an example (``"..." - Shakespeare``) are dropped.
    """
    gloss = gloss.strip()
    match = _EXAMPLES_START.search(gloss)
    if match is None:
        return gloss.rstrip("; ").strip(), []
    definition = gloss[: match.start()].rstrip("; ").strip()
    examples = [e.strip() for e in _QUOTED.findall(gloss[match.start() + 1 :])]
    return definition, [e for e in examples if e]


def parse_data_line(line: str) -> Synset | None:
    """Parse one ``data.*`` line; ``None`` for the licence header (lines starting with 2 spaces)."""
    if line.startswith("  ") or not line.strip():
        return None
    head, sep, gloss = line.partition(" | ")
    if not sep:
        head, gloss = line.rstrip("\n").removesuffix(" |"), ""
    fields = head.split()
    offset, pos, w_cnt = fields[0], fields[2], int(fields[3], 16)
    lemmas = [_ADJ_MARKER.sub("", fields[4 + 2 * i]) for i in range(w_cnt)]
    definition, examples = parse_gloss(gloss)
    return Synset(offset=offset, pos=pos, lemmas=lemmas, definition=definition, examples=examples)


def parse_data_file(lines: Iterable[str]) -> Iterator[Synset]:
    """Synsets from the lines of one ``data.*`` file, header skipped."""
    for line in lines:
        synset = parse_data_line(line)
        if synset is not None:
            yield synset


@functools.lru_cache(maxsize=4)
def _load(directory: Path) -> tuple[Synset, ...]:
    synsets: list[Synset] = []
    for name in DATA_FILES:
        with open(directory / name, encoding="utf-8") as fh:
            synsets.extend(parse_data_file(fh))
    return tuple(synsets)


def load_synsets(directory: Path | None = None) -> list[Synset]:
    """All synsets of the four POS files (noun, verb, adj, adv order); parsed once per process."""
    return list(_load(Path(directory) if directory is not None else wordnet_dir()))


def document_text(synset: Synset) -> str:
    """The retrieval document for a synset: ``"first lemma: definition"``, spaces for ``_``."""
    return f"{synset.lemmas[0].replace('_', ' ')}: {synset.definition}"


def retrieval_candidates(synsets: list[Synset]) -> tuple[list[Synset], list[Synset], Counter[str]]:
    """(query pool, usable documents, example counts) under the unambiguous-label rules.

    Only synsets whose document text is unique in ``synsets`` can be documents, and a query is
    an example that occurs in no other synset, so each query has exactly one relevant
    document. The evaluation suite (``aegis_lab.evaluation.suite``) builds on the same rules.
    """
    doc_counts = Counter(document_text(s) for s in synsets if s.definition)
    example_counts = Counter(e for s in synsets for e in set(s.examples))
    usable = [s for s in synsets if s.definition and doc_counts[document_text(s)] == 1]
    query_pool = [s for s in usable if any(example_counts[e] == 1 for e in s.examples)]
    return query_pool, usable, example_counts


def _select(
    synsets: list[Synset], n_docs: int, n_queries: int, seed: int
) -> tuple[list[tuple[Synset, str]], list[Synset]]:
    """Pick (query synset, example) pairs and the shuffled corpus; labels must be unambiguous
    (``retrieval_candidates``)."""
    if not 0 < n_queries <= n_docs:
        raise ValueError(f"need 0 < n_queries <= n_docs, got {n_queries=} {n_docs=}")
    query_pool, usable, example_counts = retrieval_candidates(synsets)
    if n_queries > len(query_pool) or n_docs > len(usable):
        raise ValueError(
            f"WordNet has only {len(query_pool)} usable queries and {len(usable)} documents"
        )
    rng = random.Random(seed)
    chosen = rng.sample(query_pool, n_queries)
    queries = [(s, rng.choice([e for e in s.examples if example_counts[e] == 1])) for s in chosen]
    chosen_ids = {s.id for s in chosen}
    distractor_pool = [s for s in usable if s.id not in chosen_ids]
    corpus = chosen + rng.sample(distractor_pool, n_docs - n_queries)
    rng.shuffle(corpus)
    return queries, corpus


def retrieval_set(
    n_docs: int = 10000, n_queries: int = 2000, seed: int = 0
) -> tuple[list[str], list[str], list[int]]:
    """Usage example → "lemma: definition" retrieval: (queries, docs, relevant doc per query).

    Deterministic for a seed; every query's synset is in the corpus, the rest are distractors.
    """
    queries, corpus = _select(load_synsets(), n_docs, n_queries, seed)
    index = {s.id: i for i, s in enumerate(corpus)}
    return (
        [example for _, example in queries],
        [document_text(s) for s in corpus],
        [index[s.id] for s, _ in queries],
    )


def retrieval_synset_ids(n_docs: int = 10000, n_queries: int = 2000, seed: int = 0) -> set[str]:
    """``Synset.id`` of every synset in that retrieval set, to hold it out of training."""
    _, corpus = _select(load_synsets(), n_docs, n_queries, seed)
    return {s.id for s in corpus}


def dev_retrieval_set(
    exclude_ids: set[str], n_docs: int = 2000, n_queries: int = 500, seed: int = 1
) -> tuple[list[str], list[str], list[int], set[str]]:
    """A development retrieval set for choosing training steps, disjoint from ``exclude_ids``.

    Built like ``retrieval_set`` from the synsets outside ``exclude_ids`` (the report's
    sets), so picking a checkpoint on it never looks at the report's data. Also returns every
    text of its synsets, which the caller must keep out of training.
    """
    synsets = [s for s in load_synsets() if s.id not in exclude_ids]
    queries, corpus = _select(synsets, n_docs, n_queries, seed)
    index = {s.id: i for i, s in enumerate(corpus)}
    texts: set[str] = set()
    for s in corpus:
        texts.update([s.definition, document_text(s), *s.examples])
    return (
        [example for _, example in queries],
        [document_text(s) for s in corpus],
        [index[s.id] for s, _ in queries],
        texts,
    )


def distillation_sentences(
    limit: int | None = None, seed: int = 0, exclude_offsets: set[str] | None = None
) -> list[str]:
    """Shuffled, de-duplicated short texts: definitions, "lemma: definition" and examples.

    ``exclude_offsets`` takes ``Synset.id`` values (``retrieval_synset_ids()``) so an eval set
    stays held out; a bare 8-digit offset excludes that offset in every POS file (safe side).
    """
    exclude = exclude_offsets or set()
    texts: dict[str, None] = {}
    held_out: set[str] = set()
    for s in load_synsets():
        own = [s.definition, document_text(s)] if s.definition else []
        own += s.examples
        if s.id in exclude or s.offset in exclude:
            held_out.update(own)
        else:
            texts.update(dict.fromkeys(own))
    # The same string can belong to a kept synset too (an example reused as a definition).
    out = [t for t in texts if t not in held_out]
    random.Random(seed).shuffle(out)
    return out if limit is None else out[:limit]
