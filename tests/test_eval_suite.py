"""The multi-domain retrieval suite: every loader on hand-written samples, the split, sampling
and near-copy rules on a synthetic pool, the clear errors, and (where apt/npm can fetch) the
real ``tiny`` suite.

All samples below are written for this test (no third-party text is committed).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from aegis_lab.data import debian, npm
from aegis_lab.data.debian import DebianPackageError, debian_package_version
from aegis_lab.data.debian_descriptions import (
    load_descriptions,
    long_description_text,
    source_packages,
)
from aegis_lab.data.doc_sections import DOC_PACKAGES, is_generic_title, load_doc_sections
from aegis_lab.data.faq import FAQ_SOURCES, faq_entries, faq_packages
from aegis_lab.data.gcide import parse_block, parse_dictd, read_index
from aegis_lab.data.manpages import MAN_PACKAGES, cap_text, parse_manpage, roff_text
from aegis_lab.data.markup import (
    clean_title,
    html_sections,
    markdown_sections,
    numbered_text_sections,
    rst_sections,
)
from aegis_lab.data.npm import NpmPackageError
from aegis_lab.data.spam_assassin import clean_body, normalize_subject, parse_message
from aegis_lab.evaluation import suite
from aegis_lab.evaluation.suite import (
    SUITE,
    Doc,
    Pair,
    Pool,
    RetrievalTask,
    assemble,
    held_out_sources,
    held_out_texts,
    is_reserved_package,
    jaccard,
    load_suite,
    load_task,
    normalize_text,
    split_of,
)

# ------------------------------------------------------------------------------ man pages
MAN_PAGE = r""".\" A page written for this test.
.TH FROB 1 "2024" "frob 1.0" "User Commands"
.SH NAME
frob, unfrob \- adjust the \fBwidget\fR tension
.SH SYNOPSIS
.B frob
[\fIOPTION\fR]...
.SH DESCRIPTION
.B frob
tightens or loosens a widget\(emgently.
It reads \*(lqwidget.conf\*(rq and \%never writes it\&.
.if n \{\
this text is for nroff only
.\}
.PP
Options:
.TP
.BR \-t ", " \-\-tight
pull harder
.TS
l l.
alpha	first cell
.TE
.SH SEE ALSO
.BR unfrob (1)
"""


def test_man_page_name_and_description() -> None:
    page = parse_manpage(MAN_PAGE, "frob.1", "frobtools")
    assert page is not None
    assert page.names == ("frob", "unfrob")
    assert page.summary == "adjust the widget tension"
    assert page.description.startswith("frob tightens or loosens a widget—gently.")
    assert '"widget.conf"' in page.description and "never writes it." in page.description
    assert "nroff only" not in page.description
    assert "-t, --tight" in page.description and "pull harder" in page.description
    assert "alpha first cell" in page.description
    assert "SEE ALSO" not in page.description and "unfrob(1)" not in page.description
    assert "\\" not in page.description


def test_man_page_redirects_and_mdoc() -> None:
    assert parse_manpage(".so man1/frob.1\n", "unfrob.1") is None
    assert parse_manpage(".TH X 1\n.SH NAME\nx\n.SH DESCRIPTION\ntext\n", "x.1") is None
    mdoc = ".Dd May 1\n.Dt ZAP 1\n.Sh NAME\n.Nm zap\n.Nd remove stale locks\n"
    mdoc += ".Sh DESCRIPTION\nThe\n.Nm\nutility deletes lock files older than\n.Ar age .\n"
    page = parse_manpage(mdoc, "zap.1")
    assert page is not None and page.names == ("zap",)
    assert page.summary == "remove stale locks"
    assert "deletes lock files older than age" in page.description


def test_roff_escapes_and_cap() -> None:
    assert (
        roff_text(r"\fBbold\fP \-n \(aqx\(aq \[u00E9] \s-1SMALL\s0 \e") == "bold -n 'x' é SMALL \\"
    )
    text = "word " * 1000
    capped = cap_text(text, 2000)
    assert len(capped) <= 2000 and capped.endswith("word")


# ------------------------------------------------------------------------------ GCIDE
GCIDE_BLOCK = """Zorblet \\Zor"blet\\ (z[^o]r"bl[e^]t), n. [From an invented
   tongue; cf. {Zorb}.]
   1. A small brass fastener used on bellows.
      [1913 Webster]

            The zorblet held though the bellows roared.
                                                  --A. Maker.
      [1913 Webster]

   2. (Fig.) Anything that holds a thing together. [Obs.]
      [1913 Webster]

   Syn: clasp; hasp.

   {Zorblet ring}, a ring with a zorblet.
      [1913 Webster]

            Not a quotation of any sense.
      [PJC]

Zorblet \\Zor"blet\\, v. t.
   To fasten with zorblets. --B. Smith.
   [1913 Webster]

            She zorbleted the lid before sunset came.
                                                  --C. Writer.
"""


def test_gcide_senses_and_quotations() -> None:
    senses = parse_block(GCIDE_BLOCK)
    assert [(s.id, s.definition) for s in senses] == [
        ("Zorblet#1", "A small brass fastener used on bellows."),
        ("Zorblet#2", "(Fig.) Anything that holds a thing together. [Obs.]"),
        ("Zorblet#3", "To fasten with zorblets."),
    ]
    assert senses[0].quotations == ["The zorblet held though the bellows roared."]
    assert senses[1].quotations == []  # the run-in phrase ended sense 2
    assert senses[2].quotations == ["She zorbleted the lid before sunset came."]


def test_gcide_dictd_index() -> None:
    header = "00-database-info\n   about\n"
    data = (header + GCIDE_BLOCK).encode()
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def enc(n: int) -> str:
        out = ""
        while True:
            out = b64[n % 64] + out
            n //= 64
            if not n:
                return out

    start, length = len(header), len(GCIDE_BLOCK)
    index = f"00-database-info\tA\t{enc(start)}\nzorblet\t{enc(start)}\t{enc(length)}\n"
    index += f"zorblets\t{enc(start)}\t{enc(length)}\n"  # a second key onto the same block
    assert read_index(index)[0] == ("zorblet", start, length)
    assert len(list(parse_dictd(index, data))) == 3


# ------------------------------------------------------------------------------ packages
TRANSLATION = """Package: frobtools
Description-md5: 0
Description-en: tools to adjust widget tension
 Frobtools adjust the tension of widgets in small steps.
 .
 It includes:
  * frob, to tighten;
  * unfrob, to loosen.

Package: frobtools-doc
Description-md5: 1
Description-en: tools to adjust widget tension (documentation)
 Frobtools adjust the tension of widgets.
"""
PACKAGES = "Package: frobtools\nVersion: 1\n\nPackage: frobtools-doc\nSource: frobtools (1)\n"
STATUS = "Package: zapd\nStatus: install ok installed\nDescription: lock remover\n Removes locks.\n"


def test_debian_descriptions() -> None:
    assert long_description_text([" a", " b", " .", " c"]) == "a b\nc"
    assert source_packages([PACKAGES]) == {"frobtools": "frobtools", "frobtools-doc": "frobtools"}
    descs = load_descriptions([TRANSLATION], [PACKAGES], STATUS)
    assert [(d.package, d.source, d.short) for d in descs] == [
        ("frobtools", "frobtools", "tools to adjust widget tension"),
        ("frobtools-doc", "frobtools", "tools to adjust widget tension (documentation)"),
        ("zapd", "zapd", "lock remover"),
    ]
    assert descs[0].long == (
        "Frobtools adjust the tension of widgets in small steps.\n"
        "It includes: * frob, to tighten; * unfrob, to loosen."
    )


def test_debian_package_version(tmp_path: Path) -> None:
    (tmp_path / "SOURCE").write_text("git-man_1%3a2.39.5-0+deb12u3_all.deb\n")
    assert debian_package_version(tmp_path) == "1:2.39.5-0+deb12u3"


def test_missing_apt_names_the_package_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DebianPackageError, match=r"frobtools.*apt-get update"):
        debian.debian_package_dir("frobtools")
    assert not (tmp_path / "data" / "debian" / "frobtools").exists()


def test_failed_download_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(debian, "_updated", True)  # no real `apt-get update`

    def fail(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package nosuch")

    monkeypatch.setattr(debian, "_run", fail)
    with pytest.raises(DebianPackageError, match=r"nosuch.*Unable to locate package"):
        debian.debian_package_dirs(["nosuch", "nosuch-either"])


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(npm.shutil, "which", lambda name: None)
    with pytest.raises(NpmPackageError, match=r"@scope/pkg@1\.0.*npm pack"):
        npm.npm_package_dir("@scope/pkg", "1.0")


# ------------------------------------------------------------------------------ e-mail
EMAIL = """From someone  Mon Jan  1 00:00:00 2001
Return-Path: <a@example.org>
Subject: Re: [frob-users] Re: widget tension keeps slipping
Content-Type: text/plain; charset=us-ascii

Try loosening the second screw before you tighten the first one,
it worked for me.

On Monday, Bob wrote:
> My widget slips every time.
> Any ideas?
BB> And it squeaks.

--
Alice, widget fan
"""
MULTIPART = """Subject: Fwd: spring cleaning of the widget shop
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XX"

--XX
Content-Type: text/plain

We sweep the shop floor on Fridays.
_______________________________________________
frob-users mailing list

--XX
Content-Type: text/html

<p>We sweep</p>
--XX--
"""


def test_email_parse_and_cleaning() -> None:
    m = parse_message(EMAIL, "easy-ham-1/00001")
    assert m is not None
    assert (m.subject, m.is_reply, m.thread) == (
        "widget tension keeps slipping",
        True,
        "widget tension keeps slipping",
    )
    assert m.body == (
        "Try loosening the second screw before you tighten the first one, it worked for me."
    )
    m2 = parse_message(MULTIPART, "easy-ham-2/00002")
    assert m2 is not None and not m2.is_reply
    assert (m2.subject, m2.body) == (
        "spring cleaning of the widget shop",
        "We sweep the shop floor on Fridays.",
    )
    assert normalize_subject("[list] Fw: hello there (fwd)") == ("hello there", False)
    assert clean_body("keep\n-----Original Message-----\ndrop") == "keep"


# ------------------------------------------------------------------------------ markup, FAQ
HTML = """<html><head><title>t</title><style>p{}</style></head><body>
<div class="sphinxsidebar"><h3>Navigation</h3><p>sidebar text</p></div>
<h1>Frob FAQ</h1>
<ul><li><a href="#q1">1. How do I tighten a widget?</a></li>
<li><a href="#q2">2. Why does the widget slip after an hour?</a></li></ul>
<h2 id="sec">2.1 How do I loosen a widget quickly?<a class="headerlink" href="#sec">¶</a></h2>
<p>Turn the small screw counter-clockwise by half a turn.</p>
<a name="q1"></a><p><b>1. How do I tighten a widget?</b></p>
<blockquote>Use the frob tool with the tight option and check the gauge.</blockquote>
<a name="q2"></a><p><b>2. Why does the widget slip after an hour?</b></p>
<p>Heat expands the brass; let it cool first.</p>
<dl><dt>Q</dt><dd>Can I frob two widgets at once?</dd>
<dt>A</dt><dd>Yes, with the twin adapter that ships in the box for that purpose.</dd></dl>
</body></html>"""


def test_html_sections_headings_toc_and_sidebars() -> None:
    sections = html_sections(HTML)
    titles = [clean_title(s.title) for s in sections]
    assert "Navigation" not in titles
    assert all("sidebar text" not in s.text for s in sections)
    by_title = {clean_title(s.title): s.text for s in sections}
    assert by_title["How do I loosen a widget quickly?"] == (
        "Turn the small screw counter-clockwise by half a turn."
    )
    assert by_title["How do I tighten a widget?"] == (
        "Use the frob tool with the tight option and check the gauge."
    )
    assert by_title["Why does the widget slip after an hour?"].startswith("Heat expands")
    entries = faq_entries(HTML, "html", "frob:faq.html", "frob", min_answer_words=5)
    questions = [e.question for e in entries]
    assert questions == [
        "How do I loosen a widget quickly?",
        "How do I tighten a widget?",
        "Why does the widget slip after an hour?",
        "Can I frob two widgets at once?",
    ]
    assert entries[3].answer.startswith("Yes, with the twin adapter")
    assert [e.id for e in entries][:2] == ["frob:faq.html#0", "frob:faq.html#1"]


RST = """=========
Frob docs
=========

Tuning the widget
-----------------

Use :command:`frob` with ``--tight``; see `the guide <http://x>`_ and :ref:`tension`.

.. note:: Keep the gauge nearby.

.. image:: widget.png
   :alt: a widget

How do I reset the tension?
~~~~~~~~~~~~~~~~~~~~~~~~~~~

Run **unfrob** twice.
"""


def test_rst_sections() -> None:
    sections = rst_sections(RST)
    assert [(s.title, s.level) for s in sections] == [
        ("Frob docs", 1),
        ("Tuning the widget", 2),
        ("How do I reset the tension?", 3),
    ]
    assert sections[1].text == (
        "Use frob with --tight; see the guide and tension.\nKeep the gauge nearby."
    )
    assert sections[2].text == "Run unfrob twice."


MARKDOWN = """# Frob FAQ

## Q1 : Does frob work on brass widgets? {#Q001}

Yes. It works on [brass](http://x) and *steel* widgets alike.

```
# not a heading
```

Setext title
------------

Some `code` text.

**Why is the gauge red?**

Because the tension is above the safe limit.
"""


def test_markdown_sections() -> None:
    sections = markdown_sections(MARKDOWN)
    assert [clean_title(s.title) for s in sections] == [
        "Frob FAQ",
        "Does frob work on brass widgets?",
        "Setext title",
        "Why is the gauge red?",
    ]
    assert sections[1].text.startswith("Yes. It works on brass and steel widgets alike.")
    assert "# not a heading" in sections[1].text
    assert sections[2].text == "Some code text."


TEXT_FAQ = """FROB FAQ

    1.1. What is frob?
    1.2. Who maintains frob and where
         are bugs reported?

SECTION 1 - GENERAL

1.1. What is frob?

Frob is a widget tension tool.
It has two modes.

1.2. Who maintains frob and where
     are bugs reported?

The frob team does; report bugs on the list.
"""


def test_numbered_text_sections() -> None:
    sections = numbered_text_sections(TEXT_FAQ)
    assert [(s.title, s.text) for s in sections] == [
        ("What is frob?", "Frob is a widget tension tool. It has two modes."),
        (
            "Who maintains frob and where are bugs reported?",
            "The frob team does; report bugs on the list.",
        ),
    ]


def test_roff_faq_paragraph_questions() -> None:
    source = ".TH FROBFAQ 7\n.SH NAME\nfrobfaq \\- questions\n.SH CONFIGURATION\n.PP\n"
    source += "How do I set the default tension?\n.RS 4\nPut a tension line in the "
    source += "configuration file and restart the daemon so it is read again.\n.RE\n"
    entries = faq_entries(source, "roff-para", "frob:frobfaq.7", "frob")
    assert [(e.question, e.answer) for e in entries] == [
        (
            "How do I set the default tension?",
            "Put a tension line in the configuration file and restart the daemon so it is "
            "read again.",
        )
    ]


def test_clean_title() -> None:
    assert clean_title("1.1 Why does it slip?# TOC") == "Why does it slip?"
    assert clean_title("Q3: (4) S7. Why?") == "Why?"
    assert clean_title("2.10. What is frob?¶") == "What is frob?"


def test_doc_sections(tmp_path: Path) -> None:
    assert (
        is_generic_title("Introduction") and is_generic_title("3.2") and is_generic_title("Kprobes")
    )
    assert is_generic_title("Chapter 3") and not is_generic_title("Tuning the widget")
    base = tmp_path / "usr" / "share" / "debian-reference"
    base.mkdir(parents=True)
    body = "<p>" + "The widget tension is adjusted with frob in small steps. " * 3 + "</p>"
    page = f"<h2>1. Introduction</h2>{body}<h2>1.1. Tuning the widget</h2>{body}"
    page += f"<h2>1.2. Two words</h2><p>too short</p><h2>1.3. Widget gauges</h2>{body}"
    page += f"<h3>Widget gauges</h3>{body}"  # a repeated title is ambiguous: dropped
    (base / "ch01.en.html").write_text(page)
    sections = load_doc_sections([("debian-reference-en", tmp_path)])
    assert [s.title for s in sections] == ["Tuning the widget"]
    assert (
        sections[0].id
        == "debian-reference-en:usr/share/debian-reference/ch01.en.html#Tuning the widget"
    )


def test_no_reserved_package_is_a_source() -> None:
    for name in ("perl-doc", "python3.11-doc", "debian-faq", "debian-faq-de", "doc-debian"):
        assert is_reserved_package(name)
    used = set(MAN_PACKAGES) | set(faq_packages()) | set(DOC_PACKAGES)
    assert not [p for p in used if is_reserved_package(p)]
    assert not [s for s in FAQ_SOURCES if "perlfaq" in s.path or "debian-faq" in s.path]


# ------------------------------------------------------------------------------ assembly
def _synthetic_pool(n: int = 600) -> Pool:
    docs, pairs = [], []
    for i in range(n):
        unit = f"item{i}"
        docs.append(
            Doc(
                f"d{i}", f"document {i} about widget model {i * 7} and its gears", "faq", unit, unit
            )
        )
        docs.append(Doc(f"x{i}", f"distractor {i} on a gauge numbered {i * 11}", "faq", unit, unit))
        pairs.append(Pair(f"question {i} on model {i * 7}?", (f"d{i}",), "faq", unit, unit))
    # Near-copies: a verbatim one and a restatement; a duplicate document text.
    docs.append(Doc("v", "see: how to frob a widget today, fast", "faq", "v", "v"))
    pairs.append(Pair("How to frob a widget today", ("v",), "faq", "v", "v"))
    docs.append(Doc("r", "today the widgets get frobbing", "faq", "r", "r"))
    pairs.append(Pair("frobbing widgets today", ("r",), "faq", "r", "r"))
    docs.append(
        Doc("d0copy", "document 0 about widget model 0 and its gears", "faq", "item0", "item0")
    )
    return Pool("synthetic", "question", "none", docs, pairs)


def test_jaccard_and_normalize() -> None:
    assert jaccard("A b c", "a B d") == pytest.approx(2 / 4)
    assert normalize_text("  Hello\n  World ") == "hello world"


def test_split_is_stable_and_about_thirty_percent() -> None:
    assert split_of("manpage", "ls.1") == split_of("manpage", "ls.1")
    shares = Counter(split_of("faq", f"e{i}") for i in range(10_000))
    assert 0.27 < shares["dev"] / 10_000 < 0.33


def test_assemble_splits_samples_and_filters() -> None:
    pool = _synthetic_pool()
    dev, dev_stats, dev_held, _ = assemble(pool, "syn", "dev", 50, 120, 0.4)
    test, test_stats, test_held, _ = assemble(pool, "syn", "test", 100, 300, 0.4)
    # Disjoint by source item, and every split item really hashes there.
    assert not set(map(tuple, dev_held)) & set(map(tuple, test_held))
    assert all(split_of(k, u) == "dev" for k, u in dev_held)
    assert all(split_of(k, u) == "test" for k, u in test_held)
    for task, (nq, nd) in ((dev, (50, 120)), (test, (100, 300))):
        assert (len(task.queries), len(task.documents)) == (nq, nd)
        assert len(set(task.documents)) == len(task.documents)
        for q, rel in zip(task.queries, task.relevant, strict=True):
            assert rel and all(0 <= r < len(task.documents) for r in rel)
            number = q.split()[1]
            assert all(task.documents[r].startswith(f"document {number} ") for r in rel)
    # Deterministic.
    again, *_ = assemble(pool, "syn", "dev", 50, 120, 0.4)
    assert again == dev
    # Near-copies are dropped in whichever split they fall.
    drops = Counter()
    for stats in (dev_stats, test_stats):
        drops.update(stats["dropped"])
    assert drops == {"verbatim": 1, "near_copy": 1}
    assert all("frob" not in q.lower() for q in dev.queries + test.queries)


@pytest.fixture
def synthetic_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(suite._POOLS, "synthetic", _synthetic_pool)
    monkeypatch.setitem(suite._KEYS, "synthetic", lambda: "v1")
    return "synthetic"


def test_tiny_held_out_and_cache(synthetic_suite: str, tmp_path: Path) -> None:
    full = load_task(synthetic_suite, "dev")
    tiny = load_task(synthetic_suite, "dev", "tiny")
    assert isinstance(tiny, RetrievalTask) and tiny.split == "dev"
    assert (len(tiny.queries), len(tiny.documents)) == (40, 150)
    assert set(tiny.queries) <= set(full.queries) and set(tiny.documents) <= set(full.documents)
    for q, rel in zip(tiny.queries, tiny.relevant, strict=True):
        i = full.queries.index(q)
        assert {tiny.documents[r] for r in rel} == {full.documents[r] for r in full.relevant[i]}
    test = load_task(synthetic_suite, "test")
    texts = held_out_texts([synthetic_suite])
    for task in (full, tiny, test):
        assert {normalize_text(t) for t in task.queries + task.documents} <= texts
    sources = held_out_sources([synthetic_suite])
    assert set(sources) >= set(suite.SOURCE_KINDS)
    dev_ids = held_out_sources([synthetic_suite], splits=["dev"])["faq"]
    test_ids = held_out_sources([synthetic_suite], splits=["test"])["faq"]
    assert dev_ids and test_ids and not dev_ids & test_ids
    assert sources["faq"] == dev_ids | test_ids
    assert "available" in full.notes or "dropped as near-copies" in full.notes
    # The second load is read from the cache: the pool is not rebuilt.
    suite._POOLS[synthetic_suite] = lambda: pytest.fail("rebuilt instead of cached")
    assert load_task(synthetic_suite, "dev") == full
    assert list((tmp_path / "data" / "suite").glob("synthetic-*.json"))


def test_bad_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        load_task("nope")
    with pytest.raises(ValueError, match="split"):
        load_task("faq", "train")
    with pytest.raises(ValueError, match="size"):
        load_task("faq", "dev", "huge")


def test_a_missing_package_fails_the_task_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DebianPackageError, match=r"dict-gcide.*apt-get update"):
        load_task("gcide", "dev", "tiny")


# ------------------------------------------------------------------------------ real data
@pytest.mark.timeout(900)  # a cold cache downloads ~150 MB and parses; warm: a few seconds
def test_real_tiny_suite() -> None:
    try:
        tasks = load_suite("dev", "tiny")
    except (DebianPackageError, NpmPackageError) as exc:
        pytest.skip(f"suite packages not obtainable here (apt-get/npm): {exc}")
    assert [t.name for t in tasks] == list(SUITE)
    for t in tasks:
        assert t.split == "dev" and t.query_kind in {"question", "title", "sentence", "keyword"}
        assert 20 <= len(t.queries) <= 40 and len(t.documents) <= 150, t.name
        assert all(rel and max(rel) < len(t.documents) for rel in t.relevant)
        assert all(
            jaccard(q, t.documents[r]) <= suite.NEAR_COPY_JACCARD
            for q, rel in zip(t.queries, t.relevant, strict=True)
            for r in rel
        )
    faq = next(t for t in tasks if t.name == "faq")
    assert all(q.endswith("?") for q in faq.queries)
    dev, test = held_out_sources(splits=["dev"]), held_out_sources(splits=["test"])
    for kind in suite.SOURCE_KINDS:
        assert dev[kind] and test[kind] and not dev[kind] & test[kind], kind
    texts = held_out_texts()
    assert all(normalize_text(q) in texts for t in tasks for q in t.queries)
