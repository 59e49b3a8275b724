"""WordNet parsing and the usage→definition retrieval set built on it.

The parser is checked on inline lines in the real ``data.*`` format; the corpus-level checks run
only where ``wordnet-base`` can be obtained (system copy, cache, or ``apt-get download``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from aegis_lab.data import debian, wordnet
from aegis_lab.data.wordnet import (
    DATA_FILES,
    Synset,
    distillation_sentences,
    document_text,
    load_synsets,
    parse_data_file,
    parse_data_line,
    parse_gloss,
    retrieval_set,
    retrieval_synset_ids,
)

HEADER = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  By obtaining, using  \n"
    "  5   \n"
    '  16 THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON  \n'
)
NOUN = (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04431553 n 0000 | "
    "that which is perceived or known or inferred to have its own distinct existence "
    "(living or nonliving)  \n"
    "00045250 04 n 02 substitution 0 exchange 2 001 @ 00037396 n 0000 | the act of putting "
    'one thing or person in the place of another: "he sent Smith in for Jones but the '
    'substitution came too late to help"  \n'
    "05224944 07 n 01 strides 0 001 @ 05224000 n 0000 | significant progress (especially in "
    'the phrase "make strides")  \n'
    "04821084 07 n 01 quality 0 000 | an essential and distinguishing attribute of something "
    'or someone; "the quality of mercy is not strained"--Shakespeare  \n'
)
VERB = (
    "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 "
    "* 00004227 v 0000 + 03110323 a 0301 + 00831191 n 0303 + 04080833 n 0301 + 04250850 n 0105 "
    "+ 00831191 n 0101 ^ 00004227 v 0103 ^ 00005041 v 0103 $ 00002325 v 0000 $ 00002573 v 0000 "
    "~ 00002573 v 0000 ~ 00002724 v 0000 ~ 00002942 v 0000 ~ 00003826 v 0000 ~ 00004032 v 0000 "
    "~ 00004227 v 0000 ~ 00005041 v 0000 ~ 00006697 v 0000 ~ 00007328 v 0000 ~ 00017031 v 0000 "
    "02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "
    '"I can breathe better when the air is clean"; "The patient is respiring"  \n'
)
ADJ = (
    "00001740 00 a 01 able 0 005 = 05200169 n 0000 = 05616246 n 0000 + 05616246 n 0101 "
    "+ 05200169 n 0101 ! 00002098 a 0101 | (usually followed by `to') having the necessary "
    'means or skill or know-how or authority to do something; "able to swim"; '
    '"she was able to program her computer"  \n'
    "00004296 00 s 02 emergent(a) 0 emerging(a) 0 002 & 00004171 a 0000 + 00011757 n 0201 | "
    'coming into existence; "an emergent republic"  \n'
    "01734884 00 s 01 afraid(p) 0 001 & 01733444 a 0000 | filled with fear or apprehension  \n"
    "00028563 00 a 01 stumpy(ip) 0 000 | short and thick  \n"
)
ADV = (
    "00001740 02 r 01 a_cappella 0 001 \\ 02944340 a 0101 | without musical accompaniment; "
    '"they performed a cappella"  \n'
)
SAMPLE = {"data.noun": NOUN, "data.verb": VERB, "data.adj": ADJ, "data.adv": ADV}


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    for name in DATA_FILES:
        (tmp_path / name).write_text(HEADER + SAMPLE[name], encoding="utf-8")
    return tmp_path


def test_header_lines_are_skipped() -> None:
    assert [parse_data_line(line) for line in HEADER.splitlines(keepends=True)] == [None] * 4
    assert list(parse_data_file((HEADER + ADV).splitlines(keepends=True))) == [
        Synset(
            offset="00001740",
            pos="r",
            lemmas=["a_cappella"],
            definition="without musical accompaniment",
            examples=["they performed a cappella"],
        )
    ]


def test_verb_line_with_pointers_and_frames() -> None:
    s = parse_data_line(VERB)
    assert s is not None
    assert (s.offset, s.pos, s.id) == ("00001740", "v", "00001740-v")
    assert s.lemmas == ["breathe", "take_a_breath", "respire", "suspire"]
    assert s.definition == "draw air into, and expel out of, the lungs"
    assert s.examples == ["I can breathe better when the air is clean", "The patient is respiring"]
    assert document_text(s) == "breathe: draw air into, and expel out of, the lungs"


def test_adjective_markers_are_stripped() -> None:
    synsets = list(parse_data_file(ADJ.splitlines()))
    assert [s.lemmas for s in synsets] == [
        ["able"],
        ["emergent", "emerging"],
        ["afraid"],
        ["stumpy"],
    ]
    assert [s.pos for s in synsets] == ["a", "s", "s", "a"]
    assert synsets[0].definition.startswith("(usually followed by `to') having")
    assert synsets[0].examples == ["able to swim", "she was able to program her computer"]
    assert synsets[2].examples == []


def test_hex_word_count() -> None:
    lemmas = " ".join(f"w{i} 0" for i in range(17))
    s = parse_data_line(f"00000001 03 n 11 {lemmas} 000 | many words  \n")
    assert s is not None
    assert len(s.lemmas) == 0x11
    assert s.definition == "many words"


@pytest.mark.parametrize(
    ("gloss", "definition", "examples"),
    [
        ("plain definition  ", "plain definition", []),
        ('def; "one"; "two"', "def", ["one", "two"]),
        ('the act: "colon example"', "the act", ["colon example"]),
        ('pushing :"She forced him"; "he squeezed"', "pushing", ["She forced him", "he squeezed"]),
        ('progress (as in "make strides")', 'progress (as in "make strides")', []),
        ('q; "mercy is not strained"--Shakespeare; "x"', "q", ["mercy is not strained", "x"]),
        ('a workplace; as in "on the job";', 'a workplace; as in "on the job"', []),
        ('swim; "a": "b"', "swim", ["a", "b"]),
    ],
)
def test_parse_gloss(gloss: str, definition: str, examples: list[str]) -> None:
    assert parse_gloss(gloss) == (definition, examples)


def test_load_synsets_from_a_directory(sample_dir: Path) -> None:
    synsets = load_synsets(sample_dir)
    assert len(synsets) == 4 + 1 + 4 + 1
    assert [s.pos for s in synsets[:4]] == ["n"] * 4  # noun, verb, adj, adv order
    assert len({s.id for s in synsets}) == len(synsets)  # offset 00001740 is in every file
    assert len({s.offset for s in synsets}) < len(synsets)
    assert sum(len(s.examples) for s in synsets) == 1 + 1 + 2 + 2 + 1 + 1


def _real_synsets() -> list[Synset]:
    try:
        return load_synsets()
    except RuntimeError as exc:  # no system copy and no apt here
        pytest.skip(f"WordNet not obtainable: {exc}")


@pytest.fixture(scope="module")
def real() -> list[Synset]:
    return _real_synsets()


def test_real_counts(real: list[Synset]) -> None:
    assert 117_000 <= len(real) <= 118_500  # 117,659 in WordNet 3.0
    n_examples = sum(len(s.examples) for s in real)
    assert 47_000 <= n_examples <= 50_000  # ~48.3k quoted usage examples
    assert Counter(s.pos for s in real).keys() == {"n", "v", "a", "s", "r"}
    assert len({s.id for s in real}) == len(real)
    assert all(s.definition and s.lemmas for s in real)
    assert not any("(" in lemma for s in real for lemma in s.lemmas if lemma.endswith(")"))
    assert all(e and '"' not in e for s in real for e in s.examples)


def test_retrieval_set_invariants(real: list[Synset]) -> None:
    queries, docs, relevant = retrieval_set(n_docs=10_000, n_queries=2_000, seed=0)
    assert (len(queries), len(docs), len(relevant)) == (2_000, 10_000, 2_000)
    assert len(set(docs)) == len(docs)
    assert len(set(queries)) == len(queries)
    assert all(0 <= r < len(docs) for r in relevant)
    assert len(set(relevant)) == len(relevant)  # one synset per query
    by_doc: dict[str, list[Synset]] = {}
    for s in real:
        by_doc.setdefault(document_text(s), []).append(s)
    owners = Counter(e for s in real for e in set(s.examples))
    for query, r in zip(queries, relevant, strict=True):
        (synset,) = by_doc[docs[r]]  # the document names exactly one synset ...
        assert query in synset.examples  # ... which is the query's own
        assert owners[query] == 1  # and no other synset claims the query
    assert all(": " in d for d in docs)
    assert "_" not in "".join(d.split(": ", 1)[0] for d in docs)


def test_retrieval_set_is_deterministic(real: list[Synset]) -> None:
    first = retrieval_set(n_docs=500, n_queries=100, seed=7)
    assert retrieval_set(n_docs=500, n_queries=100, seed=7) == first
    assert retrieval_set(n_docs=500, n_queries=100, seed=8) != first
    with pytest.raises(ValueError):
        retrieval_set(n_docs=10, n_queries=11)


def test_distillation_sentences_hold_out_the_eval(real: list[Synset]) -> None:
    everything = distillation_sentences()
    assert 250_000 <= len(everything) <= 300_000
    assert len(set(everything)) == len(everything)
    assert all(everything)
    assert distillation_sentences(limit=50, seed=3) == distillation_sentences(seed=3)[:50]
    assert distillation_sentences(limit=50, seed=3) != distillation_sentences(limit=50, seed=4)

    queries, docs, _ = retrieval_set()
    held = distillation_sentences(exclude_offsets=retrieval_synset_ids())
    assert not set(held) & (set(queries) | set(docs))
    assert len(held) < len(everything)


def test_wordnet_dir_prefers_the_system_copy(
    tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wordnet, "SYSTEM_WORDNET_DIR", sample_dir)
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    assert wordnet.wordnet_dir() == sample_dir
    assert not (tmp_path / "cache").exists()


def test_wordnet_dir_without_apt_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wordnet, "SYSTEM_WORDNET_DIR", tmp_path / "absent")
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install -y wordnet-base"):
        wordnet.wordnet_dir()
    assert not (tmp_path / "cache" / "data" / "debian" / "wordnet-base").exists()
