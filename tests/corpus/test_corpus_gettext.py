from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelflow.config import GettextSource
from babelflow.corpus.gettext import collect_gettext, mo_entries, po_entries, read_catalog, read_mo
from babelflow.corpus.records import InputRecord
from babelflow.errors import InputError

from tests.corpus.mo_writer import make_mo
from tests.system_catalogs import GERMAN_CATALOGS, needs_german_catalogs


def _catalog(tmp_path: Path, lang: str, data: bytes, name: str = "app.mo") -> Path:
    d = tmp_path / lang / "LC_MESSAGES"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
    return d / name


@pytest.mark.parametrize("endian", ["<", ">"])
def test_mo_context_plural_and_untranslated(tmp_path, endian):
    data = make_mo({
        b"Open": b"\xc3\x96ffnen",
        b"menu\x04File": b"Datei",
        b"%d file\x00%d files": b"%d Datei\x00%d Dateien",
        b"Line one\nline two": b"Zeile eins\nZeile zwei",
        b"Missing": b"",
    }, endian=endian)
    path = _catalog(tmp_path, "de", data)
    pairs, rec = read_catalog(path, "de", "t", "fail", None)
    got = sorted((p.src, p.tgt) for p in pairs)
    assert got == sorted([
        ("Open", "Öffnen"), ("File", "Datei"), ("%d file", "%d Datei"), ("%d files", "%d Dateien"),
        ("Line one line two", "Zeile eins Zeile zwei"),
    ])
    assert rec.dropped == {"untranslated": 1}
    assert rec.read == len(pairs) + sum(rec.dropped.values())
    assert rec.extra["line_breaks_replaced"] == 2
    assert rec.extra["domain"] == "app" and len(rec.sha256) == 64


def test_mo_charset_header_and_bad_encoding(tmp_path):
    latin = _catalog(tmp_path, "fr", make_mo({b"Yes": "Oui, très".encode("latin-1")}, charset="ISO-8859-1"))
    pairs, _ = read_catalog(latin, "fr", "t", "fail", None)
    assert [(p.src, p.tgt) for p in pairs] == [("Yes", "Oui, très")]
    bad = _catalog(tmp_path, "fr", make_mo({b"Yes": b"\xff\xfe", b"No": b"Non"}), "bad.mo")
    with pytest.raises(InputError, match="bad.mo.*not valid utf-8"):
        read_catalog(bad, "fr", "t", "fail", None)
    pairs, rec = read_catalog(bad, "fr", "t", "skip", None)
    assert [(p.src, p.tgt) for p in pairs] == [("No", "Non")]
    assert rec.dropped == {"invalid_encoding": 1} and rec.read == 2


def test_mo_bad_magic_names_file(tmp_path):
    path = _catalog(tmp_path, "de", b"\x00\x01\x02\x03" + b"\x00" * 40, "broken.mo")
    with pytest.raises(InputError, match=r"broken\.mo: bad \.mo magic"):
        list(read_mo(path))
    pairs, rec = read_catalog(path, "de", "t", "skip", None)
    assert pairs == [] and "bad .mo magic" in rec.extra["error"] and rec.read == 0


def test_po_skips_fuzzy_obsolete_and_empty(tmp_path):
    po = tmp_path / "de.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#: src/a.c:1\nmsgid "Save"\nmsgstr "Speichern"\n\n'
        '#, fuzzy\nmsgid "Close"\nmsgstr "Schließen"\n\n'
        'msgid "Empty"\nmsgstr ""\n\n'
        'msgctxt "verb"\nmsgid ""\n"Print "\n"now"\nmsgstr "Jetzt drucken"\n\n'
        'msgid "One tab"\nmsgid_plural "%d tabs"\nmsgstr[0] "Ein Tab"\nmsgstr[1] "%d Tabs"\n\n'
        '#~ msgid "Old"\n#~ msgstr "Alt"\n', encoding="utf-8")
    pairs, rec = read_catalog(po, "de", "t", "fail", None)
    assert sorted((p.src, p.tgt) for p in pairs) == sorted([
        ("Save", "Speichern"), ("Print now", "Jetzt drucken"), ("One tab", "Ein Tab"), ("%d tabs", "%d Tabs")])
    assert rec.dropped == {"fuzzy": 1, "untranslated": 1}
    assert rec.read == len(pairs) + 2


def test_po_malformed_line_names_line(tmp_path):
    po = tmp_path / "de.po"
    po.write_text('msgid "A"\nmsgstr "B"\nnonsense here\n', encoding="utf-8")
    with pytest.raises(InputError) as ei:
        list(po_entries(po))
    assert ei.value.line == 3 and ei.value.path == str(po)


@needs_german_catalogs
def test_real_system_catalog_de():
    mos = GERMAN_CATALOGS
    pairs, rec = read_catalog(mos[0], "de", "system", "fail", None)
    assert rec.read == len(pairs) + sum(rec.dropped.values())
    assert all("\n" not in p.src + p.tgt and "\t" not in p.src + p.tgt for p in pairs)
    cfg = GettextSource(type="gettext", search=["system"], domains=[mos[0].stem])
    all_pairs, recs = collect_gettext(cfg, ["de"], "fail")
    assert len(recs) >= 1 and len(all_pairs) >= len(pairs) > 0


def test_explicit_paths_and_language_from_path(tmp_path):
    mo = _catalog(tmp_path / "x", "ga", make_mo({b"Hello": b"Dia duit"}))
    cfg = GettextSource(type="gettext", search=[], paths=[str(mo)])
    pairs, recs = collect_gettext(cfg, ["ga", "de"], "fail")
    assert [(p.lang, p.src, p.tgt) for p in pairs] == [("ga", "Hello", "Dia duit")]
    cfg = GettextSource(type="gettext", search=[], paths=[str(tmp_path / "x")])
    pairs, recs = collect_gettext(cfg, ["ga"], "fail")
    assert len(pairs) == 1 and len(recs) == 1  # found once, not once per route


def test_a_locale_variant_is_its_own_language(tmp_path):
    # /usr/share/locale keeps sr (Cyrillic) and sr@latin apart; so must the corpus.
    _catalog(tmp_path, "sr", make_mo({b"Open": "Отвори".encode()}))
    _catalog(tmp_path, "sr@latin", make_mo({b"Open": b"Otvori"}))
    cfg = GettextSource(type="gettext", search=[str(tmp_path)])
    pairs, _ = collect_gettext(cfg, ["sr@latin"], "fail")
    assert [(p.lang, p.tgt) for p in pairs] == [("sr@latin", "Otvori")]
    pairs, _ = collect_gettext(cfg, ["sr"], "fail")
    assert [(p.lang, p.tgt) for p in pairs] == [("sr", "Отвори")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.booleans())
def test_mo_reader_random_bytes_only_input_error(tmp_path, data, with_magic):
    if with_magic:
        data = b"\xde\x12\x04\x95" + data
    path = tmp_path / "fuzz.mo"
    path.write_bytes(data)
    rec = InputRecord("t", "gettext", str(path), "de")
    try:
        list(mo_entries(path, "skip", rec))
    except InputError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet='msgidtr "\\\n#,~[]0123', max_size=200))
def test_po_reader_random_text_only_input_error(tmp_path, text):
    path = tmp_path / "de.po"
    path.write_text(text, encoding="utf-8")
    try:
        list(po_entries(path))
    except InputError:
        pass


def test_po_charset_from_header(tmp_path):
    po = tmp_path / "fr.po"
    po.write_bytes('msgid ""\nmsgstr "Content-Type: text/plain; charset=ISO-8859-1\\n"\n\n'
                   'msgid "Yes"\nmsgstr "Oui, très"\n'.encode("latin-1"))
    pairs, _ = read_catalog(po, "fr", "t", "fail", None)
    assert [(p.src, p.tgt) for p in pairs] == [("Yes", "Oui, très")]
