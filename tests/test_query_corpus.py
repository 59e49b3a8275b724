"""The query corpus (``aegis-lab corpus build``): parsers, generators, hold-outs, sampling.

Every source parser runs on a tiny hand-written sample in the source's format (no third-party
text is committed); the build runs end to end on a fixture tree of all sources, so these tests
need no network and take seconds.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

import pytest

from aegis_lab.data import query_corpus as qc
from aegis_lab.data.query_corpus_generate import (
    Lexicon,
    debian_texts,
    entry_texts,
    gerund,
    how_to_phrases,
    keyword_spans,
    leaks,
    manpage_texts,
    surface,
    third_person,
)
from aegis_lab.data.query_corpus_sources import (
    DebPackage,
    Entry,
    ManPage,
    debian_packages,
    dictd_blocks,
    is_reserved_package,
    parse_debian_packages,
    parse_debian_translations,
    parse_foldoc_block,
    parse_fortune_file,
    parse_gcide_block,
    parse_jargon_block,
    parse_man_page,
    parse_vera_block,
    read_man_pages,
)
from aegis_lab.data.query_corpus_text import (
    normalize,
    sentences,
    sentences_any_case,
    short_pieces,
    word_count,
)

# ------------------------------------------------------------------------ hand-written data
GCIDE_BLOCK = (
    'Gizmoid \\Giz"moid\\, n. [From gizmo + -oid.]\n'
    "   1. (Mech.) A small device whose proper name escapes the speaker.\n"
    "      [Test 2026]\n"
    "\n"
    "   2. A trifle; a bauble of no use.\n"
    "      [Test 2026]\n"
    "\n"
    "         He kept a gizmoid on his desk for luck.      --Nobody.\n"
    "      [Test 2026]\n"
    "\n"
    "   Note: The word is mostly used in jest by workshop staff.\n"
    "         [Test 2026]\n"
    "\n"
    "   {Gizmoid drawer}, a drawer full of small useless parts.\n"
    "      [Test 2026]\n"
)
FOLDOC_BLOCK = (
    "frobnication\n\n"
    "   <jargon, programming> The act of adjusting a {parameter} without a plan.\n"
    "   It is often done late at night.\n\n"
    "   (2026-01-01)\n"
)
JARGON_BLOCK = (
    "bitfroth\n n.\n\n"
    "    [test lore] Useless output that fills a terminal. Programmers scroll past\n"
    "    bitfroth while looking for the one line that matters.\n"
)
VERA_BLOCK = "QZX\n       Quick Zero eXchange (protocol, test)\n"

MAN_PAGE = r""".\" a hand-written test page
.TH FROBNICATE 1 "2026-01-01" "test 1.0" "User Commands"
.SH NAME
frobnicate \- adjust widget settings
.SH SYNOPSIS
.B frobnicate
[\fIOPTION\fR]... \fIFILE\fR
.SH DESCRIPTION
.B frobnicate
changes the settings of a widget file.
It allows you to rename widget profiles without editing them by hand.
.TP
\fB\-v\fR, \fB\-\-verbose\fR
print what is being done
.PP
The default mode is quiet.
.nf
frobnicate \-v widget.cfg
.fi
.SH "SEE ALSO"
\fBwidget\fR(5)
"""
MDOC_PAGE = """.Dd January 1, 2026
.Dt WIDGETD 8
.Os
.Sh NAME
.Nm widgetd
.Nd serve widget files over the network
.Sh DESCRIPTION
The
.Nm
daemon listens on a port and sends widget files to clients.
.Fl d
keeps it in the foreground.
"""
MAN3_PAGE = """.TH wdg_open 3 2026-01-01 "test"
.SH NAME
wdg_open, wdg_close \\- open and close a widget handle
.SH DESCRIPTION
The
.BR wdg_open ()
function opens the widget named by \\fIpath\\fP.
"""

PACKAGES_TEXT = """Package: widgetd
Version: 1.0-1
Section: net
Description: server for widget files
Tag: role::program, use::transmission

Package: widgetd-common
Source: widgetd
Version: 1.0-1
Section: net
Description: server for widget files (common files)

Package: libwidget-dev
Source: widget
Section: libdevel
Description: development files for the widget library

Package: widget-transitional
Section: oldlibs
Description: transitional dummy package

Package: perl-doc
Section: doc
Description: Perl documentation

Package: gizmo-tools
Section: utils
Description: tool to convert gizmo archives
"""
TRANSLATION_TEXT = """Package: widgetd
Description-md5: 00000000000000000000000000000001
Description-en: server for widget files
 Widgetd serves widget files over a network. It lets you share widget
 profiles between machines.
 .
 Features:
  * automatic discovery of widget peers
  * encrypted transfers

Package: widgetd-common
Description-md5: 00000000000000000000000000000002
Description-en: server for widget files (common files)
 Widgetd serves widget files over a network. It lets you share widget
 profiles between machines.
 .
 This package contains the common files.

Package: libwidget-dev
Description-md5: 00000000000000000000000000000003
Description-en: development files for the widget library
 The widget library reads and writes widget profiles.
 .
 This package contains the header files.

Package: gizmo-tools
Description-md5: 00000000000000000000000000000004
Description-en: tool to convert gizmo archives
 Gizmo tools can be used to convert old gizmo archives into the new format.
"""

# WordNet data-file lines (invented synsets in the real format).
WN_NOUN = (
    "  1 header line of the licence\n"
    "00001000 06 n 02 gizmo 0 doohickey 0 000 | a small mechanical device whose name is "
    'forgotten; "he fiddled with the gizmo all evening"  \n'
    "00002000 06 n 01 widget_drawer 0 000 | a drawer holding spare widget parts and small "
    'tools; "the widget drawer was full again"  \n'
    "00003000 06 n 01 quernstone 0 000 | a round flat stone used for grinding grain by hand  \n"
)
WN_VERB = (
    "00004000 30 v 01 twiddle 0 000 | adjust a device by trial and error; "
    '"she twiddled the radio until the signal came back"  \n'
    "00005000 30 v 01 tinker 0 000 | work on something in an unskilled or experimental way  \n"
)
WN_ADJ = "00006000 00 a 01 fiddly 0 000 | requiring careful handling of small parts  \n"

SOTU_DOC = {
    "year": 2026,
    "name": "Test President",
    "party": "none",
    "text": "The state of our widget industry is strong. We will build better roads, "
    "stronger bridges and faster railways across the nation.",
}
MOBY_DOC = {
    "chapter": "1",
    "title": "Testing.",
    "text": "The sea was grey and calm that morning. Nobody on the deck spoke a word, and "
    "the old captain stared at the horizon for an hour.",
}
FORTUNES = (
    "A quiet widget is a working widget.\n%\nNever trust a gizmo that hums.\n\t\t-- Anon\n%\n"
)
EMAIL = (
    "From test@example.org  Mon Jan  1 00:00:00 2026\n"
    "Subject: Re: [widgets] Widget daemon crashes on startup\n"
    "From: tester@example.org\n\n"
    "The widget daemon crashes every time I start it on my laptop, any ideas?\n"
)


def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = alphabet[n % 64] + out
        n //= 64
        if n == 0:
            return out


def write_dictd(directory: Path, name: str, blocks: list[tuple[list[str], str]]) -> None:
    """A dictd database (``.index`` + gzip ``.dict.dz``) of ``(headwords, text)`` blocks."""
    data = b""
    index = ["00-database-short\tA\tB"]
    for heads, text in blocks:
        raw = text.encode("utf-8")
        for head in heads:
            index.append(f"{head}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    (directory / f"{name}.dict.dz").write_bytes(gzip.compress(data))


def write_man(root: Path, section: str, name: str, text: str) -> None:
    directory = root / "usr" / "share" / "man" / f"man{section[0]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.{section}.gz").write_bytes(gzip.compress(text.encode("utf-8")))


@pytest.fixture(scope="module")
def fixture_inputs(tmp_path_factory: pytest.TempPathFactory) -> qc.Inputs:
    root = tmp_path_factory.mktemp("sources")
    wn = root / "wordnet"
    wn.mkdir()
    for fname, text in (
        ("data.noun", WN_NOUN),
        ("data.verb", WN_VERB),
        ("data.adj", WN_ADJ),
        ("data.adv", ""),
    ):
        (wn / fname).write_text(text, encoding="utf-8")
    dictd = root / "dictd"
    write_dictd(dictd, "gcide", [(["Gizmoid", "Gizmoid drawer"], GCIDE_BLOCK)])
    write_dictd(dictd, "foldoc", [(["frobnication"], FOLDOC_BLOCK)])
    write_dictd(dictd, "jargon", [(["bitfroth"], JARGON_BLOCK)])
    write_dictd(dictd, "vera", [(["qzx"], VERA_BLOCK)])
    man = root / "man-widget"
    write_man(man, "1", "frobnicate", MAN_PAGE)
    write_man(man, "8", "widgetd", MDOC_PAGE)
    write_man(man, "3", "wdg_open", MAN3_PAGE)
    write_man(man, "3", "wdg_close", ".so man3/wdg_open.3\n")
    apt = root / "apt"
    apt.mkdir()
    (apt / "test_Packages").write_text(PACKAGES_TEXT, encoding="utf-8")
    (apt / "test_Translation-en").write_text(TRANSLATION_TEXT, encoding="utf-8")
    sotu = root / "sotu"
    sotu.mkdir()
    (sotu / "2026_test_president_n.json").write_text(json.dumps(SOTU_DOC), encoding="utf-8")
    moby = root / "moby"
    moby.mkdir()
    (moby / "chapter_1.json").write_text(json.dumps(MOBY_DOC), encoding="utf-8")
    spam = root / "spam"
    (spam / "data" / "easy-ham-1").mkdir(parents=True)
    (spam / "data" / "easy-ham-1" / "00001.abcdef.txt").write_text(EMAIL, encoding="utf-8")
    fortunes = root / "fortunes"
    (fortunes / "usr/share/games/fortunes").mkdir(parents=True)
    (fortunes / "usr/share/games/fortunes/widgets").write_text(FORTUNES, encoding="utf-8")
    return qc.Inputs(
        wordnet=wn,
        dictd={n: dictd for n in ("gcide", "foldoc", "jargon", "vera")},
        debian_packages=[apt / "test_Packages"],
        debian_translations=[apt / "test_Translation-en"],
        man=[("widget-tools", man)],
        sotu=sotu,
        moby_dick=moby,
        spam_assassin=spam,
        fortunes=fortunes,
        versions={"fixture": "1"},
    )


@pytest.fixture(scope="module")
def lexicon(fixture_inputs: qc.Inputs) -> Lexicon:
    from aegis_lab.data.wordnet import load_synsets

    base = Lexicon.from_synsets(load_synsets(fixture_inputs.wordnet))
    extra_nouns = {
        "file",
        "files",
        "widget",
        "profile",
        "part",
        "archive",
        "device",
        "server",
        "network",
        "directory",
        "directories",
        "settings",
        "handle",
        "library",
        "word",
    }
    return Lexicon(
        base.nouns | extra_nouns,
        base.verbs | {"adjust", "rename", "share", "convert", "open", "close", "serve"},
        base.adjectives | {"small", "new", "old", "spare"},
        base.adverbs,
    )


# -------------------------------------------------------------------------------- text
def test_sentences_keep_abbreviations_and_initials() -> None:
    text = "Use e.g. a file. Mr. Smith wrote it in the U.S. Army. It works! Does it?"
    assert sentences(text) == [
        "Use e.g. a file.",
        "Mr. Smith wrote it in the U.S. Army.",
        "It works!",
        "Does it?",
    ]
    assert sentences_any_case(normalize(text)) == [normalize(s) for s in sentences(text)]


def test_short_pieces_cut_long_sentences_at_clauses() -> None:
    long = "; ".join(["alpha beta gamma delta epsilon zeta eta theta iota kappa"] * 6)
    pieces = list(short_pieces(long))
    assert pieces and all(3 <= word_count(p) <= 40 for p in pieces)
    assert list(short_pieces("short text here")) == ["short text here"]


def test_normalize_is_the_dedup_key() -> None:
    assert normalize("  What IS\tgrep?\n") == "what is grep?"


# ------------------------------------------------------------------------------ parsers
def test_gcide_block_definitions_quotes_notes_and_subentries() -> None:
    entries = parse_gcide_block(["Gizmoid"], GCIDE_BLOCK)
    main, sub = entries
    assert main.term == "Gizmoid"
    assert main.definitions == [
        "A small device whose proper name escapes the speaker.",
        "A trifle; a bauble of no use.",
    ]
    assert main.examples == ["He kept a gizmoid on his desk for luck."]
    assert main.notes == ["The word is mostly used in jest by workshop staff."]
    assert (sub.term, sub.definitions) == (
        "Gizmoid drawer",
        ["a drawer full of small useless parts."],
    )
    assert ("gcide-headword", "gizmoid") in main.held_keys == sub.held_keys


def test_dictd_blocks_group_index_lines_of_one_block(tmp_path: Path) -> None:
    write_dictd(tmp_path, "t", [(["One", "Alias"], "One\n  first\n"), (["Two"], "Two\n  x\n")])
    index = (tmp_path / "t.index").read_text()
    blocks = list(dictd_blocks(index, gzip.decompress((tmp_path / "t.dict.dz").read_bytes())))
    assert [heads for heads, _ in blocks] == [["One", "Alias"], ["Two"]]


def test_foldoc_jargon_vera_blocks() -> None:
    foldoc = parse_foldoc_block(["frobnication"], FOLDOC_BLOCK)
    assert foldoc is not None
    assert foldoc.definitions == ["The act of adjusting a parameter without a plan."]
    assert foldoc.notes == ["It is often done late at night."]
    jargon = parse_jargon_block(["bitfroth"], JARGON_BLOCK)
    assert jargon is not None
    assert jargon.definitions == ["Useless output that fills a terminal."]
    vera = parse_vera_block(["qzx"], VERA_BLOCK)
    assert vera is not None and vera.definitions == ["Quick Zero eXchange"]


def test_man_page_name_and_description() -> None:
    page = parse_man_page(MAN_PAGE, "widget-tools", "frobnicate.1.gz")
    assert page is not None
    assert (page.name, page.section, page.summary) == ("frobnicate", "1", "adjust widget settings")
    assert (
        page.description[0] == "frobnicate changes the settings of a widget file. It allows "
        "you to rename widget profiles without editing them by hand."
    )
    assert "The default mode is quiet." in page.description
    assert not any("verbose" in p or "widget.cfg" in p for p in page.description)
    assert ("manpage", "frobnicate.1") in page.held_keys


def test_mdoc_and_function_pages(tmp_path: Path) -> None:
    page = parse_man_page(MDOC_PAGE, "widget-tools", "widgetd.8")
    assert page is not None and page.summary == "serve widget files over the network"
    assert page.description[0].startswith("The widgetd daemon listens on a port")
    assert "-d keeps it in the foreground." in page.description[0]
    func = parse_man_page(MAN3_PAGE, "x", "wdg_open.3")
    assert func is not None and func.names == ["wdg_open", "wdg_close"]
    assert parse_man_page(".so man3/wdg_open.3\n", "x", "wdg_close.3") is None


def test_read_man_pages_skips_links(fixture_inputs: qc.Inputs) -> None:
    package, root = fixture_inputs.man[0]
    pages = list(read_man_pages(root, package))
    assert sorted(p.id for p in pages) == ["frobnicate.1", "wdg_open.3", "widgetd.8"]
    assert {p.package for p in pages} == {"widget-tools"}


def test_reserved_and_faq_pages_are_never_read() -> None:
    faq = MAN_PAGE.replace("frobnicate \\- adjust", "perlfaq4 \\- adjust")
    assert parse_man_page(faq, "perl", "perlfaq4.1") is None
    assert parse_man_page(MAN_PAGE, "git-man", "gitfaq.7") is None
    for name in ("perl-doc", "debian-faq", "doc-debian", "python3-doc", "python3.11-doc"):
        assert is_reserved_package(name)
    assert not is_reserved_package("perl")
    with pytest.raises(ValueError, match="reserved"):
        qc._deb_dirs(["perl-doc"], required=True)


def test_debian_lists() -> None:
    packages = parse_debian_packages(PACKAGES_TEXT)
    assert packages["widgetd-common"]["source"] == "widgetd"
    assert packages["widgetd"]["source"] == "widgetd"
    translations = parse_debian_translations(TRANSLATION_TEXT)
    short, long = translations["widgetd"]
    assert short == "server for widget files"
    assert long == [
        "Widgetd serves widget files over a network. It lets you share widget profiles "
        "between machines.",
        "Features:",
        "automatic discovery of widget peers",
        "encrypted transfers",
    ]
    names = [p.name for p in debian_packages(packages, translations)]
    assert names == ["gizmo-tools", "libwidget-dev", "widgetd", "widgetd-common"]


def test_fortunes_drop_attributions() -> None:
    assert list(parse_fortune_file(FORTUNES)) == [
        "A quiet widget is a working widget.",
        "Never trust a gizmo that hums.",
    ]


# --------------------------------------------------------------------------- generators
def test_morphology() -> None:
    assert [third_person(v) for v in ("copy", "push", "list", "go", "do")] == [
        "copies",
        "pushes",
        "lists",
        "goes",
        "does",
    ]
    assert [gerund(v) for v in ("copy", "make", "run", "list", "tie")] == [
        "copying",
        "making",
        "running",
        "listing",
        "tying",
    ]


def test_phrase_forms(lexicon: Lexicon) -> None:
    from aegis_lab.data.query_corpus_generate import _article, _base_form, _third_person_phrase

    assert (
        _base_form("opens and closes a widget handle", lexicon) == "open and close a widget handle"
    )
    assert _base_form("widget settings", lexicon) is None
    assert _third_person_phrase("open and possibly close a file", lexicon) == (
        "opens and possibly closes a file"
    )
    assert _article("archive tool") == "an archive tool"
    assert _article("widget files") == "widget files"  # plural head: no article
    assert _article("library for widget files") == "a library for widget files"
    assert gerund("format") == "formatting"


def test_leaks() -> None:
    assert leaks("how do I extract a tar.gz file", "tar")
    assert leaks("what is a word for running fast", "run", stem=True)
    assert not leaks("which command copies files", "cp")
    assert not leaks("how to create a file", "creat", stem=False)


def test_keyword_spans_and_how_to(lexicon: Lexicon) -> None:
    spans = keyword_spans("a small device for spare widget parts in a drawer", lexicon)
    assert "spare widget parts" in spans
    assert all(2 <= len(s.split()) <= 5 for s in spans)
    phrases = how_to_phrases("It allows you to rename widget profiles by hand.", lexicon)
    assert phrases == ["rename widget profiles by hand"]
    assert how_to_phrases("It can be used to change this default.", lexicon) == []


def test_surface_varies_case_and_punctuation() -> None:
    rng = random.Random(0)
    out = {surface("how do I open a widget file", rng, "question") for _ in range(300)}
    assert any(t.endswith("?") for t in out) and any(not t.endswith("?") for t in out)
    assert any(t[0].isupper() for t in out) and any(t[0].islower() for t in out)


def test_reverse_questions_never_name_their_answer(lexicon: Lexicon) -> None:
    entry = Entry(
        "wordnet",
        "1-n",
        "quernstone",
        pos="n",
        definitions=["a round flat stone used for grinding grain by hand"],
    )
    texts = []
    for seed in range(60):
        gens = entry_texts(entry, random.Random(seed), lexicon, 2, 3, 1)
        texts += [g for g in gens if "reverse" in g.template]
    assert len({g.template for g in texts}) >= 8
    assert all("quernstone" not in g.text.lower() for g in texts)
    # A definition that names its term gets no reverse question at all.
    circular = Entry("wordnet", "2-n", "grain", pos="n", definitions=["grain used as food"])
    gens = entry_texts(circular, random.Random(0), lexicon, 0, 3, 0)
    assert not [g for g in gens if "reverse" in g.template]


def test_manpage_and_package_questions(lexicon: Lexicon) -> None:
    page = ManPage(
        "widget-tools",
        "frobnicate",
        "1",
        ["frobnicate"],
        "adjust widget settings",
        ["It allows you to rename widget profiles without a text editor."],
    )
    gens = []
    for seed in range(40):
        gens += manpage_texts(page, random.Random(seed), lexicon)
    kinds = {g.kind for g in gens}
    assert {"question", "keyword"} <= kinds
    tasks = [g.text.lower() for g in gens if g.template.startswith("man-task")]
    assert len(set(tasks)) >= 15
    assert any("adjust widget settings" in t for t in tasks)
    assert any("rename widget profiles" in t for t in tasks)
    assert all("frobnicate" not in t for t in tasks)
    assert any("adjusts widget settings" in t for t in tasks)  # "which command adjusts ..."

    pkg = DebPackage("zorblax", "utils", "tool to convert gizmo archives", [], source="zorblax")
    deb = []
    for seed in range(30):
        deb += debian_texts(pkg, random.Random(seed), lexicon)
    tasks = [g.text.lower() for g in deb if g.template.startswith("deb-task")]
    assert tasks and all("convert gizmo archives" in t or "converting" in t for t in tasks)
    assert all("zorblax" not in t for t in tasks)
    assert any("zorblax" in g.text for g in deb if g.template.startswith("deb-name"))
    # The package's own name words are in its description: no "which package ..." question.
    named = DebPackage("gizmo-tools", "utils", "tool to convert gizmo archives", [], source="g")
    deb = [g for seed in range(30) for g in debian_texts(named, random.Random(seed), lexicon)]
    assert not [g for g in deb if g.template.startswith(("deb-task", "deb-reverse"))]


# -------------------------------------------------------------------------------- build
def _texts(path: Path) -> dict[str, list[str]]:
    manifest = qc.read_manifest(path)
    return {
        s: (path / v["file"]).read_text(encoding="utf-8").splitlines()
        for s, v in manifest["streams"].items()
    }


def test_build_writes_a_deduplicated_mixed_corpus(
    tmp_path: Path, fixture_inputs: qc.Inputs
) -> None:
    out, manifest = qc.build_corpus(tmp_path / "c", 10_000, 0, False, False, fixture_inputs)
    texts = _texts(out)
    everything = [t for ts in texts.values() for t in ts]
    assert len(everything) == manifest["count"] == len({normalize(t) for t in everything})
    kinds = {s.split("/")[0] for s in texts}
    assert {"text", "question", "keyword"} <= kinds
    for stream in (
        "text/wordnet-definition",
        "text/gcide-definition",
        "text/foldoc-definition",
        "text/debian-long",
        "text/manpage-name",
        "text/sotu-sentence",
        "text/moby-dick-sentence",
        "text/email-subject",
        "text/fortunes",
        "question/manpage",
        "question/debian",
        "question/wordnet",
    ):
        assert texts.get(stream), stream
    assert "Widget daemon crashes on startup" in texts["text/email-subject"]
    assert manifest["exclusions"]["enabled"] is False
    assert manifest["streams"]["text/gcide-definition"]["licence"].startswith("GPL-3+")
    assert manifest["length_words"]["share_2_40"] > 0.9
    assert 0 < manifest["query_shaped_share"] < 1
    # Transitional and reserved packages are never used.
    assert not any("Perl documentation" in t or "dummy" in t for t in everything)


def test_build_is_deterministic_and_capped(tmp_path: Path, fixture_inputs: qc.Inputs) -> None:
    a, ma = qc.build_corpus(tmp_path / "a", 60, 3, False, False, fixture_inputs)
    b, _ = qc.build_corpus(tmp_path / "b", 60, 3, False, False, fixture_inputs)
    assert _texts(a) == _texts(b)
    assert ma["count"] == 60
    c, _ = qc.build_corpus(tmp_path / "c", 60, 4, False, False, fixture_inputs)
    assert _texts(c) != _texts(a)


def test_exclusion_by_text_and_by_source_item(tmp_path: Path, fixture_inputs: qc.Inputs) -> None:
    held_sentence = "The sea was grey and calm that morning."
    excl = qc.Exclusions(
        texts={normalize(held_sentence), normalize("Never trust a gizmo that hums.")},
        sources={
            "manpage": {"frobnicate.1"},
            "debian-package": {"widgetd-common"},
            "wordnet-synset": {"00003000-n"},
            "gcide-headword": {"gizmoid"},
        },
    )
    collected = qc.build_texts(fixture_inputs, excl, 0, progress=False)
    everything = " || ".join(t.lower() for ts in collected.streams.values() for t in ts)
    assert held_sentence.lower() not in everything
    assert "never trust a gizmo" not in everything
    assert "frobnicate" not in everything  # the man page and every question about it
    assert "quernstone" not in everything and "grinding grain" not in everything
    assert "gizmoid" not in everything and "bauble" not in everything
    # widgetd-common is held out: its sibling widgetd (same source package) goes too.
    debian = " || ".join(
        t.lower() for s, ts in collected.streams.items() if "debian" in s for t in ts
    )
    assert "share widget profiles" not in everything and "widgetd" not in debian
    assert "gizmo-tools" in everything  # unrelated items stay
    assert collected.stats["excluded_texts"] >= 1
    assert collected.stats["excluded_items:manpage"] == 1
    assert collected.stats["excluded_items:debian-sibling"] == 1


def _suite_unimportable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the suite module were missing, also when another test imported it already
    (`from aegis_lab.evaluation import suite` reads the package attribute first)."""
    import aegis_lab.evaluation

    monkeypatch.setitem(sys.modules, "aegis_lab.evaluation.suite", None)
    monkeypatch.delattr(aegis_lab.evaluation, "suite", raising=False)


def test_exclusions_refuse_without_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    _suite_unimportable(monkeypatch)
    with pytest.raises(qc.ExclusionsUnavailable, match="--no-exclusions"):
        qc.exclusions()
    assert qc.exclusions(enabled=False).enabled is False


def test_cli_refuses_without_exclusions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aegis_lab.cli import main

    _suite_unimportable(monkeypatch)
    assert main(["corpus", "build", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "evaluation suite" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_package_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aegis_lab.cli import main
    from aegis_lab.data import debian, wordnet

    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    monkeypatch.setattr(wordnet, "wordnet_dir", lambda: tmp_path)
    rc = main(["corpus", "build", "--no-exclusions", "--out", str(tmp_path / "y"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "dict-gcide" in err and "apt-get" in err


def test_load_corpus_samples_stratified(tmp_path: Path, fixture_inputs: qc.Inputs) -> None:
    from aegis_lab.training.corpus import load_corpus

    out, manifest = qc.build_corpus(tmp_path / "tiny", 10_000, 0, False, False, fixture_inputs)
    full = load_corpus(f"corpus:{out}")
    assert len(full) == manifest["count"]
    assert sorted(load_corpus(str(out))) == sorted(full)
    n = manifest["count"] // 2
    a = load_corpus(f"corpus:{out}", n, seed=1)
    assert len(a) == n and len(set(a)) == n
    assert a == load_corpus(f"corpus:{out}", n, seed=1)
    assert a != load_corpus(f"corpus:{out}", n, seed=2)
    # Each stream keeps its share (largest remainder: within one text).
    stream_of = {t: s for s, ts in _texts(out).items() for t in ts}
    for stream, info in manifest["streams"].items():
        got = sum(stream_of[t] == stream for t in a)
        assert abs(got - info["count"] * n / manifest["count"]) <= 1, stream
    with pytest.raises(FileNotFoundError, match="aegis-lab corpus build"):
        load_corpus(f"corpus:{tmp_path / 'missing'}")
