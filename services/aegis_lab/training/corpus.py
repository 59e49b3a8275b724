"""The distillation corpus: the texts the student learns the teacher's vectors of.

Kept apart so the one rule that matters here is in one place: no synset of a WordNet retrieval
set the report may use (nor of the dev set, see ``dev``) is ever trained on.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WORDNET_EVAL_SIZES", "load_corpus", "report_synset_ids"]

# WordNet retrieval sets the report may use (n_docs, n_queries); all are held out of training.
WORDNET_EVAL_SIZES = ((10000, 2000), (4000, 1000))


def report_synset_ids() -> set[str]:
    """Every synset of the WordNet retrieval sets the report may use: never trained on."""
    from aegis_lab.data.wordnet import retrieval_synset_ids

    held_out: set[str] = set()
    for n_docs, n_queries in WORDNET_EVAL_SIZES:
        held_out |= retrieval_synset_ids(n_docs, n_queries)
    return held_out


def load_corpus(spec: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Texts from a file (one per line), a package corpus: ``wordnet`` (eval synsets held out),
    or the built query corpus: ``corpus:NAME`` / its directory (``aegis-lab corpus build``).

    ``wordnet`` is ``distillation_sentences`` minus every synset of the default WordNet
    retrieval set, so the report's dataset is never the distillation corpus.
    """
    if spec == "wordnet":
        from aegis_lab.data.wordnet import distillation_sentences

        return distillation_sentences(limit, seed=seed, exclude_offsets=report_synset_ids())
    if spec.startswith("corpus:") or (Path(spec) / "manifest.json").is_file():
        # The query corpus (`aegis-lab corpus build`): a sample stratified across its sources.
        from aegis_lab.data.query_corpus import sample_corpus

        return sample_corpus(spec, limit, seed)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"corpus {spec!r} is neither 'wordnet', 'corpus:NAME' nor a text file")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    return texts if limit is None else texts[:limit]
