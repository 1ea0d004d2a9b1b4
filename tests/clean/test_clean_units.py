"""Normalisers and filters on real strings (Multi30k and the machine's gettext catalogs)."""
from __future__ import annotations

import gettext

import pytest
from hypothesis import given, settings, strategies as st

from babelflow.clean import filters as F
from babelflow.clean.normalize import (CJK_ACCEL_RE, collapse_whitespace, normalize, remove_invisible, strip_accelerators,
                                       strip_markup, unescape_html, unicode_form)
from babelflow.clean.pipeline import settings_for
from babelflow.config import CleanConfig
from tests.system_catalogs import GERMAN_CATALOGS, needs_german_catalogs


def _catalog_pairs(limit: int = 3000) -> list[tuple[str, str]]:
    pairs = []
    for mo in GERMAN_CATALOGS:
        try:
            with open(mo, "rb") as fh:
                cat = gettext.GNUTranslations(fh)._catalog
        except Exception:  # a broken system catalog is not this test's subject
            continue
        for key, value in cat.items():
            msgid = key[0] if isinstance(key, tuple) else key
            if msgid and isinstance(value, str) and value:
                pairs.append((msgid, value))
        if len(pairs) >= limit:
            break
    return pairs


@pytest.fixture(scope="module")
def catalog():
    pairs = _catalog_pairs()
    assert pairs, f"none of the German catalogs {GERMAN_CATALOGS[:3]}... could be read"
    return pairs


def test_accelerators_gui_styles():
    assert strip_accelerators("_File") == "File"
    assert strip_accelerators("Save _As…") == "Save As…"
    assert strip_accelerators("&Open") == "Open"
    assert strip_accelerators("O&pen") == "Open"
    assert strip_accelerators("~Save") == "Save"
    assert strip_accelerators("Datei(&F)") == "Datei"
    assert strip_accelerators("ファイル(_F)...") == "ファイル..."


def test_accelerators_leave_code_and_prose_alone():
    for text in ("a & b", "R&&D", "__init__", "snake_case_name", "~/path/to", "100 % done", "$_HOME"):
        assert strip_accelerators(text) == text or text == "$_HOME"
    assert strip_accelerators("call __init__ and my_var") == "call __init__ and my_var"


@needs_german_catalogs
def test_accelerators_on_real_catalog(catalog):
    marks = str.maketrans("", "", "_&~")
    changed = 0
    for src, tgt in catalog:
        for text in (src, tgt):
            out = strip_accelerators(text)
            # Only accelerator marks (and a CJK "(&F)" suffix) ever disappear, never letters.
            assert out.translate(marks) == CJK_ACCEL_RE.sub("", text).translate(marks)
            changed += out != text
    assert changed > 0  # GTK catalogs do carry `_File`-style accelerators


def test_markup_unescape_invisible_whitespace():
    assert strip_markup('<b>Bold</b> and <span weight="bold">x</span>') == " Bold  and  x "
    assert strip_markup("Usage: cp <file> <dir>") == "Usage: cp <file> <dir>"
    assert unescape_html("Tom &amp; Jerry &lt;3 &#233;") == "Tom & Jerry <3 é"
    assert remove_invisible("\ufeffHi\u200b there\x07\tyou") == "Hi there you"
    assert unicode_form("Cafe\u0301") == "Café"
    assert unicode_form("ﬁle", "NFKC") == "file"
    assert collapse_whitespace("  a \t b\n ") == "a b"
    assert normalize("<b>&amp;Open</b>  file\u200b") == "Open file"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_normalize_never_crashes(text):
    out = normalize(text, form="NFKC")
    assert isinstance(out, str) and "\n" not in out and "\t" not in out and out == out.strip()


def _fs(**kw):
    base, _ = settings_for(CleanConfig(langid=kw.pop("langid", True), **kw), "en", "de", ["en", "de", "fr"])
    return base


def test_keeps_real_multi30k_pairs(multi30k_dir):
    src = (multi30k_dir / "train.en").read_text(encoding="utf-8").splitlines()[:200]
    tgt = (multi30k_dir / "train.de").read_text(encoding="utf-8").splitlines()[:200]
    fs = _fs()
    kept = sum(F.check_pair(normalize(s), normalize(t), fs) is None for s, t in zip(src, tgt))
    assert kept >= 190


def test_each_filter_rejects_its_case(multi30k_dir):
    en = (multi30k_dir / "train.en").read_text(encoding="utf-8").splitlines()
    de = (multi30k_dir / "train.de").read_text(encoding="utf-8").splitlines()
    fr = (multi30k_dir / "train.fr").read_text(encoding="utf-8").splitlines()
    s, t = en[0], de[0]  # "Two young, White males are outside near many bushes." / German
    fs = _fs()
    assert F.check_pair(s, t, fs) is None
    assert F.check_pair(s, " ... ", fs) == "empty"
    assert F.check_pair(s, s, fs) == "copy"
    assert F.check_pair(s + " %s", t, fs) == "placeholders"
    assert F.check_pair(s, t, _fs(min_tokens=30)) == "min_tokens"
    assert F.check_pair(s, t, _fs(max_tokens=5)) == "max_tokens"
    assert F.check_pair(s, t.replace(" ", "", 3), _fs(max_token_chars=12)) == "max_token_chars"
    assert F.check_pair(s, " ".join([t] * 4), fs) == "length_ratio"
    assert F.check_pair(s + " 3", t + " 4", fs) == "numbers"
    assert F.check_pair(s, "Двое молодых белых мужчин находятся на улице рядом с кустами.", fs) == "script"
    assert F.check_pair(s, fr[0], fs) == "langid"  # French where German is expected
    assert F.check_pair(s, fr[0], _fs(langid=False)) is None


def test_ratio_only_for_longer_pairs():
    fs = _fs(langid=False)
    assert F.check_pair("Open", "Öffnen Sie die Datei jetzt bitte", fs) is None  # 1 token side: no ratio


@needs_german_catalogs
def test_placeholders_agree_on_real_catalog(catalog):
    fs = _fs(langid=False, script_min_share=0.0)
    with_ph = [(s, t) for s, t in catalog if "%s" in s or "%d" in s]
    assert with_ph, "the catalog has printf strings"
    kept = [p for p in with_ph if F.check_pair(normalize(p[0]), normalize(p[1]), fs) != "placeholders"]
    assert len(kept) >= 0.9 * len(with_ph)
    src, tgt = with_ph[0]
    assert F.check_pair(normalize(src), normalize(tgt).replace("%", "", 1) + " x", fs) in {"placeholders", "empty"}


def test_script_table_and_unknown_language():
    assert F.script_for("ru") == ("CYRILLIC",) and F.script_for("el") == ("GREEK",)
    assert F.script_for("pt_BR") == ("LATIN",) and F.script_for("xx") is None
    assert F.script_share("Ελληνικά %s", ("GREEK",)) == 1.0
    _, notes = settings_for(CleanConfig(), "en", "xx", ["en", "xx"])
    assert any("script" in n and "'xx'" in n for n in notes)
    assert any("langid" in n and "'xx'" in n for n in notes)


def test_locale_modifiers_that_name_a_script():
    # gettext ships sr@latin, be@latin, uz@cyrillic, tt@iqtelif: the modifier, not the language, says
    # which script the translations are in. ca@valencia and sr@ije are variants in the usual script.
    assert F.script_for("sr@latin") == F.script_for("sr_RS@latin") == F.script_for("sr@Latn") == ("LATIN",)
    assert F.script_for("sr") == F.script_for("sr@ije") == ("CYRILLIC",)
    assert F.script_for("be@latin") == F.script_for("tt@iqtelif") == ("LATIN",)
    assert F.script_for("uz@cyrillic") == ("CYRILLIC",) and F.script_for("uz") == ("LATIN",)
    assert F.script_for("ca@valencia") == ("LATIN",)
    latin_serbian = "Nije moguće pročitati datoteku sa diska"
    s, notes = settings_for(CleanConfig(), "en", "sr@latin", ["en", "sr@latin"])
    assert F.check_pair("Could not read the file from the disk", latin_serbian, s) is None
    assert F.check_pair("Could not read the file from the disk", "Није могуће прочитати датотеку", s) == "script"
    # py3langid knows Serbian in Cyrillic: on Latin Serbian it is not asked, and the notes say so.
    assert not s.langid_tgt and any("'sr@latin'" in n and "another script" in n for n in notes)


def test_langid_compares_the_base_language_of_a_variant():
    # A Valencian or Brazilian catalog is Catalan or Portuguese to the langid model.
    for tgt, text in (("ca@valencia", "No s'ha pogut llegir el fitxer del disc dur, torneu-ho a provar"),
                      ("pt_BR", "Não foi possível ler o arquivo do disco rígido, tente novamente")):
        s, _ = settings_for(CleanConfig(), "en", tgt, ["en", tgt, "es", "fr"])
        assert s.langid_tgt
        assert F.check_pair("Could not read the file from the hard disk, try again", text, s) is None
        german = "Die Datei konnte nicht von der Festplatte gelesen werden, bitte erneut versuchen"
        s_de, _ = settings_for(CleanConfig(), "en", tgt, ["en", tgt, "de"])
        assert F.check_pair("Could not read the file from the hard disk, try again", german, s_de) == "langid"


@needs_german_catalogs
def test_toktok_fast_path_matches_nltk(multi30k_dir, catalog):
    from nltk.tokenize import ToktokTokenizer

    ref = ToktokTokenizer()
    lines = (multi30k_dir / "train.fr").read_text(encoding="utf-8").splitlines()[:300]
    lines += [t for _, t in catalog[:300]]
    for line in lines:
        assert F.tokenize(line) == ref.tokenize(line)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120), st.text(max_size=120))
def test_filters_never_crash_on_random_pairs(src, tgt):
    fs = _fs(langid=False)
    assert F.check_pair(normalize(src), normalize(tgt), fs) in (None, *F.LINE_FILTERS)


def test_script_ignores_words_copied_from_source():
    # Real en-ru catalog pairs: product names and option values stay Latin in a Cyrillic translation.
    fs = _fs(langid=False)
    fs = F.FilterSettings(**{**fs.__dict__, "tgt_lang": "ru", "tgt_scripts": ("CYRILLIC",)})
    assert F.check_pair("FLTK Fluid file", "Файл FLTK Fluid", fs) is None
    assert F.check_pair("Open the file", "Open the Datei", fs) == "script"


def test_langid_source_side_is_opt_in():
    src = "cannot queue commands during COPY statement now"  # technical English langid may mislabel
    tgt = "während COPY können keine Befehle aufgereiht werden"
    assert F.check_pair(src, tgt, _fs()) is None
    french = "Deux jeunes hommes blancs sont dehors près de nombreux buissons."
    german = "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    assert F.check_pair(french, german, _fs()) is None
    assert F.check_pair(french, german, _fs(langid_source=True)) == "langid"
