#!/usr/bin/env python3
"""Writes models/tokenizer_tables.c: the data tables the CLIP tokenizer's text cleanup needs to behave
exactly like transformers' CLIPTokenizer with ftfy (see docs/tokenizer.md).

    PYTHON tools/gen_tokenizer_tables.py > models/tokenizer_tables.c
    clang-format -i models/tokenizer_tables.c

Run it from the repository root with the Python the tokenizer fixtures use (tools/golden/README.md):
Python 3.11, whose unicodedata is Unicode 14.0, with the `regex` module transformers imports, and ftfy.
Everything is computed from that Python:

- ftfy's HTML entity table: every `html.entities.html5` name that ends in ';', plus the upper-case
  spellings ftfy adds for lower-case names (`&EACUTE;` -> 'É'); Python's numeric character reference
  rules (`html._invalid_charrefs`, `html._invalid_codepoints`).
- ftfy's small maps: C1 controls read as Windows-1252, Latin ligatures, half/full-width forms.
- Python's `str.lower()` final-sigma context: the Case_Ignorable and Cased properties.
- The code points Python's Unicode 14 leaves unassigned: the C code keeps utf8proc's (possibly newer)
  data away from them, so that case mapping, normalisation and digits stay as Python has them.
- Where the `regex` module's `\\p{L}`, `\\p{N}` and `\\s` (with IGNORECASE, as CLIPTokenizer compiles its
  pattern) disagree with the classes the C code derives from Unicode general categories; the `regex`
  module carries a newer Unicode version than Python's unicodedata, so letters added since are listed.

When ftfy is importable the script also checks its own tables against ftfy's.
"""
import html
import html.entities
import sys
import unicodedata

import regex

ALL = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def c_string(s):
    """A C string literal of s in UTF-8: printable ASCII as is, every other byte as a 3-digit octal escape
    (so a following digit can never extend the escape)."""
    out = []
    for b in s.encode("utf-8"):
        if 0x20 <= b < 0x7F and chr(b) not in '"\\?':
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def ranges(cps):
    """Sorted code points -> list of [first, last]."""
    out = []
    for cp in cps:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def html_entities():
    """ftfy.chardata._build_html_entities, written out: name (without '&' and ';') -> text."""
    entities = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            entities[name[:-1]] = char
            if name == name.lower():
                upper = "&" + name.upper()
                if html.unescape(upper) == upper:
                    entities[name.upper()[:-1]] = char.upper()
    # ftfy's pattern only ever matches 1 to 24 ASCII letters and digits between '&' and ';'.
    return {k: v for k, v in entities.items() if 1 <= len(k) <= 24 and k.isascii() and k.isalnum()}


def c1_as_cp1252():
    """Bytes 0x80..0x9F decoded as Windows-1252, holes kept as the Latin-1 code point (ftfy's
    'sloppy-windows-1252')."""
    out = []
    for b in range(0x80, 0xA0):
        try:
            out.append(ord(bytes([b]).decode("cp1252")))
        except UnicodeDecodeError:
            out.append(b)
    return out


LIGATURES = {
    0x0132: "IJ", 0x0133: "ij", 0x0149: "\u02bcn", 0x01F1: "DZ", 0x01F2: "Dz", 0x01F3: "dz",
    0x01C4: "D\u017d", 0x01C5: "D\u017e", 0x01C6: "d\u017e", 0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj",
    0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi",
    0xFB04: "ffl", 0xFB05: "\u017ft", 0xFB06: "st",
}


def width_map():
    """ftfy.chardata._build_width_map: U+3000 -> ' ', and U+FF01..U+FFEF -> their NFKC form."""
    out = {0x3000: " "}
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        if alt != chr(cp):
            out[cp] = alt
    return out


def sigma_properties():
    """Case_Ignorable and Cased as Python's str.lower() sees them, read off its final-sigma rule:
    ' ' + c + 'Σ' lowers to a final ς exactly when c is cased and not case-ignorable; 'A' + c + 'Σ' when
    c is case-ignorable or cased."""
    ignorable, cased = [], []
    for cp in ALL:
        c = chr(cp)
        cased_only = (" " + c + "\u03a3").lower()[-1] == "\u03c2"
        either = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
        if cased_only:
            cased.append(cp)
        elif either:
            ignorable.append(cp)
    return ignorable, cased


# The classes of CLIPTokenizer's pattern, as the C code numbers them (tokenizer_text.h).
CLS_OTHER, CLS_LETTER, CLS_NUMBER, CLS_SPACE, CLS_NONE = 0, 1, 2, 3, 4


def category_class(cp):
    """What the C code derives from the general category alone."""
    cat = unicodedata.category(chr(cp))
    if cat[0] == "L":
        return CLS_LETTER
    if cat[0] == "N":
        return CLS_NUMBER
    if cat in ("Zs", "Zl", "Zp") or 0x09 <= cp <= 0x0D or cp == 0x85:
        return CLS_SPACE
    return CLS_OTHER


def regex_class(cp):
    """What CLIPTokenizer's compiled pattern makes of the character."""
    c = chr(cp)
    letter = regex.match(r"[\p{L}]", c, regex.IGNORECASE) is not None
    number = regex.match(r"[\p{N}]", c, regex.IGNORECASE) is not None
    space = regex.match(r"\s", c) is not None
    other = regex.match(r"[^\s\p{L}\p{N}]", c, regex.IGNORECASE) is not None
    if letter:
        return CLS_LETTER
    if number:
        return CLS_NUMBER
    if space:
        return CLS_SPACE
    # U+0345 (a combining mark whose case folding is a letter) matches neither the letter class nor
    # the negated class under IGNORECASE: findall steps over it like over a space.
    return CLS_OTHER if other else CLS_NONE


def class_overrides():
    out = []
    for cp in ALL:
        want = regex_class(cp)
        if want != category_class(cp):
            if out and out[-1][1] == cp - 1 and out[-1][2] == want:
                out[-1][1] = cp
            else:
                out.append([cp, cp, want])
    return out


def check_against_ftfy(entities, c1, width):
    try:
        import ftfy.bad_codecs  # noqa: F401  (registers sloppy-windows-1252)
        import ftfy.chardata as cd
    except ImportError:
        print("note: ftfy not importable; tables not cross-checked", file=sys.stderr)
        return
    theirs = {k[1:-1]: v for k, v in cd.HTML_ENTITIES.items() if 1 <= len(k) - 2 <= 24}
    assert theirs == entities, "HTML entity table differs from ftfy's"
    assert {k: v for k, v in cd.LIGATURES.items()} == LIGATURES, "ligatures differ from ftfy's"
    assert cd.WIDTH_MAP == width, "width map differs from ftfy's"
    assert [ord(c) for c in bytes(range(0x80, 0xA0)).decode("sloppy-windows-1252")] == c1


def main():
    # The C code special-cases these; fail loudly if a newer Python changes them.
    multi_lower = [cp for cp in ALL if len(chr(cp).lower()) != 1]
    assert multi_lower == [0x130], multi_lower
    extra_space = [cp for cp in ALL if chr(cp).isspace() and regex.match(r"\s", chr(cp)) is None]
    assert extra_space == [0x1C, 0x1D, 0x1E, 0x1F], extra_space
    assert all(regex.match(r"\s", chr(cp)) is None or chr(cp).isspace() for cp in ALL)

    entities = html_entities()
    c1 = c1_as_cp1252()
    width = width_map()
    check_against_ftfy(entities, c1, width)
    ignorable, cased = sigma_properties()
    overrides = class_overrides()
    invalid_refs = sorted(html._invalid_charrefs.items())
    invalid_cps = ranges(sorted(html._invalid_codepoints))

    w = sys.stdout.write
    w("/* Generated by tools/gen_tokenizer_tables.py; do not edit. Regenerate with\n")
    w(" *   PYTHON tools/gen_tokenizer_tables.py > models/tokenizer_tables.c\n")
    w(" *   clang-format -i models/tokenizer_tables.c\n")
    w(" * with PYTHON the fixtures' Python (tools/golden/README.md). Source: Python %s (unicodedata %s),\n"
      " * regex %s. See docs/tokenizer.md. */\n"
      % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__))
    w('#include "tokenizer_text.h"\n\n')

    w("/* ftfy's HTML entities (html5 names ending in ';' plus ftfy's upper-case spellings), sorted by\n")
    w(" * name (strcmp order) for binary search; the name is what lies between '&' and ';'. */\n")
    w("const sdt_tok_entity sdt_tok_entities[] = {\n")
    for name in sorted(entities, key=lambda s: s.encode()):
        w("    {%s, %s},\n" % (c_string(name), c_string(entities[name])))
    w("};\nconst size_t sdt_tok_entity_count = sizeof sdt_tok_entities / sizeof sdt_tok_entities[0];\n\n")

    w("/* html.unescape's replacements for numeric references to these code points. */\n")
    w("const sdt_tok_cp_map sdt_tok_invalid_charrefs[] = {\n")
    for num, s in invalid_refs:
        assert len(s) == 1
        w("    {0x%X, 0x%X},\n" % (num, ord(s)))
    w("};\nconst size_t sdt_tok_invalid_charref_count =\n"
      "    sizeof sdt_tok_invalid_charrefs / sizeof sdt_tok_invalid_charrefs[0];\n\n")

    w("/* Code points html.unescape turns a numeric reference into nothing for. */\n")
    w("const sdt_tok_range sdt_tok_invalid_codepoints[] = {\n")
    for a, b in invalid_cps:
        w("    {0x%X, 0x%X},\n" % (a, b))
    w("};\nconst size_t sdt_tok_invalid_codepoint_count =\n"
      "    sizeof sdt_tok_invalid_codepoints / sizeof sdt_tok_invalid_codepoints[0];\n\n")

    w("/* U+0080..U+009F as the Windows-1252 characters their bytes stand for (holes unchanged). */\n")
    w("const uint32_t sdt_tok_c1_cp1252[32] = {\n")
    w("    " + ", ".join("0x%X" % cp for cp in c1) + ",\n};\n\n")

    w("/* ftfy's Latin ligatures and digraphs, sorted by code point. */\n")
    w("const sdt_tok_cp_text sdt_tok_ligatures[] = {\n")
    for cp in sorted(LIGATURES):
        w("    {0x%X, %s},\n" % (cp, c_string(LIGATURES[cp])))
    w("};\nconst size_t sdt_tok_ligature_count = sizeof sdt_tok_ligatures / sizeof sdt_tok_ligatures[0];\n\n")

    w("/* ftfy's width map: full-width and half-width forms to their usual forms, sorted. */\n")
    w("const sdt_tok_cp_text sdt_tok_widths[] = {\n")
    for cp in sorted(width):
        w("    {0x%X, %s},\n" % (cp, c_string(width[cp])))
    w("};\nconst size_t sdt_tok_width_count = sizeof sdt_tok_widths / sizeof sdt_tok_widths[0];\n\n")

    w("/* Case_Ignorable code points (Python's str.lower() final-sigma rule). */\n")
    w("const sdt_tok_range sdt_tok_case_ignorable[] = {\n")
    for a, b in ranges(ignorable):
        w("    {0x%X, 0x%X},\n" % (a, b))
    w("};\nconst size_t sdt_tok_case_ignorable_count =\n"
      "    sizeof sdt_tok_case_ignorable / sizeof sdt_tok_case_ignorable[0];\n\n")

    w("/* Cased code points that are not case-ignorable. */\n")
    w("const sdt_tok_range sdt_tok_cased[] = {\n")
    for a, b in ranges(cased):
        w("    {0x%X, 0x%X},\n" % (a, b))
    w("};\nconst size_t sdt_tok_cased_count = sizeof sdt_tok_cased / sizeof sdt_tok_cased[0];\n\n")

    w("/* Code points unassigned in Python's Unicode database (general category Cn). */\n")
    w("const sdt_tok_range sdt_tok_unassigned[] = {\n")
    for a, b in ranges([cp for cp in ALL if unicodedata.category(chr(cp)) == "Cn"]):
        w("    {0x%X, 0x%X},\n" % (a, b))
    w("};\nconst size_t sdt_tok_unassigned_count = sizeof sdt_tok_unassigned / sizeof sdt_tok_unassigned[0];\n\n")

    w("/* Where CLIPTokenizer's pattern classes a character differently from its general category. */\n")
    w("const sdt_tok_class_range sdt_tok_class_overrides[] = {\n")
    for a, b, cls in overrides:
        w("    {0x%X, 0x%X, %d},\n" % (a, b, cls))
    w("};\nconst size_t sdt_tok_class_override_count =\n"
      "    sizeof sdt_tok_class_overrides / sizeof sdt_tok_class_overrides[0];\n")


if __name__ == "__main__":
    main()
