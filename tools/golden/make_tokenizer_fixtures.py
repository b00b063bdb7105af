#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures in tests/data/tokenizer/ (see docs/tokenizer.md):

- vocab.json, merges.txt: a small vocabulary in the Hugging Face format, learnt here from TRAINING_TEXT
  (the 256 byte symbols, the same with </w>, one token per merge, <|startoftext|>, <|endoftext|>);
- corpus.txt: the test strings, one JSON string per line;
- expected_small.jsonl: per corpus line what transformers' CLIPTokenizer (the slow one, with ftfy)
  gives with the small vocabulary: "ids" (no BOS/EOS), "padded" (max_length 77, pad = EOS), "bang"
  (the ids when "!" is a special token, as in SDXL's second tokenizer; only for lines holding a '!')
  and "clean" (whitespace_clean(ftfy.fix_text(text)).lower());
- expected_real.jsonl: "ids" and "padded" with the real CLIP vocabulary, when
  ../shared/data/clip/bpe_simple_vocab_16e6.txt.gz is there (its vocab.json and merges.txt are built in a
  temporary folder, never in the repository);
- kohya_small.jsonl, kohya_real.jsonl: sd-scripts' windows for the long prompts, for max_token_length
  75, 150 and 225, pad = EOS and pad = 0;
- random.jsonl: random strings (fixed seed) drawn from the awkward parts of the corpus (entities, numeric
  references, combining marks, code points from every plane, specials, case-mapping oddities), with
  "clean" and the ids of both vocabularies ("small", and "real" when the real vocabulary is there; with
  "_bang" the ids with "!" special, for strings holding a '!').

Run from the repository root with a Python that has transformers 4.44.2, ftfy 6.3 and regex:
    PYTHON tools/golden/make_tokenizer_fixtures.py
"""
import collections
import gzip
import json
import os
import sys
import tempfile

import ftfy
import regex
import transformers
from transformers import CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode, whitespace_clean

OUT = "tests/data/tokenizer"
REAL = "../shared/data/clip/bpe_simple_vocab_16e6.txt.gz"
N_SMALL_MERGES = 400
N_RANDOM = 600
CLIP_MERGES = 49152 - 256 - 2
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)

# ---- the small vocabulary -------------------------------------------------------------------------------

TRAINING_TEXT = """
a photo of a cat sitting on a wooden table, highly detailed, sharp focus, studio lighting
masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, blue eyes, outdoors
a painting of a mountain landscape at sunset by a famous artist, oil on canvas, trending on artstation
portrait of an old man with a beard, dramatic lighting, black and white photography, 35mm film
the quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun
cyberpunk city street at night, neon lights, rain, reflections, cinematic, ultra realistic, 8k
a cute corgi puppy wearing sunglasses on the beach, summer, bright colors, digital art
interior of a cozy cabin with a fireplace, snow outside the window, warm light, illustration
don't, can't, won't, it's, we're, they've, I'm, you'll, she'd, let's, that's, there's
worst quality, low quality, blurry, bad anatomy, extra fingers, watermark, signature, text
une photo d'un château en France, été, fleurs, café, crème brûlée, naïve, élégant
ein Foto von einem Hund im Schnee, Straße, grün, schön, Mädchen, Brücke über den Fluss
фотография кошки на столе, красивый пейзаж, горы и река
東京の夜景、桜の木、富士山、かわいい猫、アニメ風のイラスト
a glowing crystal sword, fantasy, magic, intricate details, volumetric light, unreal engine
"""


def byte_symbols():
    return list(bytes_to_unicode().values())


def learn_merges(text, count):
    """Plain BPE training over the pre-tokens CLIPTokenizer would see: repeatedly join the most frequent
    adjacent pair (ties: the smaller pair), skipping pairs whose joined string is already a token."""
    encoder = bytes_to_unicode()
    words = collections.Counter()
    for token in PATTERN.findall(whitespace_clean(ftfy.fix_text(text)).lower()):
        chars = [encoder[b] for b in token.encode("utf-8")]
        words[tuple(chars[:-1]) + (chars[-1] + "</w>",)] += 1
    tokens = set(byte_symbols()) | {s + "</w>" for s in byte_symbols()}
    merges = []
    while len(merges) < count:
        pairs = collections.Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        best = next((p for p, _ in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
                     if p[0] + p[1] not in tokens), None)
        if best is None:
            break
        merges.append(best)
        tokens.add(best[0] + best[1])
        merged = collections.Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def vocabulary(merges):
    """openai's order: bytes, bytes + </w>, merges, the two specials (sd_arch_spec.md §3.5 item 5)."""
    vocab = byte_symbols()
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}


def write_hf_files(folder, merges):
    """vocab.json as transformers' save_vocabulary writes it, merges.txt with its version header."""
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(vocabulary(merges), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


# ---- the corpus -------------------------------------------------------------------------------------------

LONG_TAGS = (
    "masterpiece, best quality, ultra-detailed, 1girl, solo, long flowing silver hair, heterochromia, "
    "red eye, blue eye, looking at viewer, gentle smile, white sundress with lace trim, straw hat with a "
    "blue ribbon, standing in a field of sunflowers, summer afternoon, cumulonimbus clouds, lens flare, "
    "depth of field, bokeh, (detailed eyes:1.2), [simple background], ((intricate jewelry)), "
    "wind blowing hair, petals in the air, soft rim light, cinematic composition, rule of thirds, "
    "highly detailed skin texture, subsurface scattering, 85mm lens, f/1.8, golden hour, warm colour "
    "grading, film grain, kodak portra 400, photorealistic, award-winning photograph"
)


def long_prompts():
    """Prompts past 75 tokens, past 150 and past 225 (with the real vocabulary; the small one splits
    words into more tokens, so these run longer still)."""
    return [
        LONG_TAGS,
        LONG_TAGS + ", " + LONG_TAGS,
        ", ".join([LONG_TAGS] * 3),
        " BREAK ".join(["a cat", "a dog on a red sofa", "moonlight through a window"] * 12),
        "(" * 40 + "masterpiece" + ")" * 40 + ", " + "very " * 100 + "detailed",
        " ".join(str(n) for n in range(300)),
        "word " * 74 + "end",
        "word " * 75 + "end",
        "word " * 149 + "end",
        "word " * 224 + "end",
        "photo! " * 80,
        "<lora:detail_tweaker:0.8>, " * 30 + "a castle",
    ]


def corpus():
    c = [
        "",
        " ",
        "   \t\n  ",
        "a photo of a cat",
        "A Photo Of A CAT",
        "a   photo\tof\na\r\ncat",
        "  leading and trailing spaces  ",
        "masterpiece, best quality, 1girl, solo",
        "worst quality, low quality, (bad anatomy:1.4), [blurry]",
        # emphasis syntax of the A1111 / sd-scripts prompt parser (the tokenizer sees it as text)
        "(word:1.2)",
        "((word))",
        "[word]",
        "[[word]]",
        "(masterpiece:1.3), (best quality:1.2), ((ultra detailed)), [lowres]",
        "\\(escaped\\) \\[brackets\\]",
        "(red:0.5) (green:-1) (blue:1e3) (word: 1.1)",
        "<lora:add_detail:0.8> <hypernet:anime:1> <lyco:style:0.6:0.4>",
        "a cat BREAK a dog BREAK",
        "a {red|green|blue} car, __wildcard__",
        "embedding:EasyNegative, EasyNegativeV2",
        # contractions in every case
        "don't can't won't it's we're they've I'm you'll she'd",
        "DON'T CAN'T WON'T IT'S WE'RE THEY'VE I'M YOU'LL SHE'D",
        "Don'T cAn'T It'S We'Re They'Ve I'M You'Ll She'D",
        "'s 't 're 've 'm 'll 'd",
        "'S 'T 'RE 'VE 'M 'LL 'D",
        "''s ''t x''re '''ve",
        "rock'n'roll o'clock ma'am y'all",
        "the dog's bone, the dogs' bones",
        "'salut' 'tis 'twas 'dumb 'really",
        "it’s “quoted” ‘single’ „low“ ‚low‘",
        "l’été d’Italie",
        "ʼokina and ʻokina",
        # numbers
        "0123456789",
        "3.14159 2,718 1e-10 -42 +7",
        "1girl 2boys 3others 100%",
        "1080p 4k 8k 16:9 4:3 1920x1080",
        "v1.5 v2.1 sdxl 1.0 sd-1.5",
        "٠١٢٣٤٥٦٧٨٩ ۰۱۲ ०१२ ০১২",
        "Ⅰ Ⅱ Ⅲ Ⅳ ⅰⅱⅲ ① ② ⑳ ½ ¾ ² ³",
        "１２３ ４５６",
        "𝟘𝟙𝟚 𝟎𝟏𝟐",
        # punctuation runs
        "!!!???...",
        "hello!!! what?! ok... --- *** ### @@@",
        "a,b;c:d.e!f?g",
        "....,,,,;;;;::::",
        "(((((((((())))))))))",
        "[[[[]]]]{{{{}}}}<<<<>>>>",
        "~`!@#$%^&*()_+-=[]{}|\\;:'\",.<>/?",
        "— – ‐ ‑ ‒ ― … ‥ ·",
        "«guillemets» ‹single› 「括弧」 『二重』 【墨付き】",
        "¡Hola! ¿Qué tal?",
        "a_b a-b a.b a/b a\\b a|b",
        "snake_case_name kebab-case-name camelCaseName PascalCaseName",
        "http://example.com/path?q=1&r=2#frag",
        "user@example.com",
        "C:\\Users\\name\\file.txt",
        "#hashtag @mention $100 €50 £20 ¥1000 ₹500",
        # HTML entities (ftfy decodes them when the text holds no '<')
        "Tom &amp; Jerry",
        "caf&eacute; &ntilde; &Ntilde; &NTILDE;",
        "&lt;tag&gt; &quot;quoted&quot; &apos;apos&apos;",
        "&amp;amp; &amp;lt;",
        "&#65;&#66;&#67; &#x41;&#X42; &#x1F600;",
        "&#59; &#x3b; &#0; &#1; &#13;x &#128; &#150; &#xD800; &#1114112; &#99999999999999999999;",
        "&#12ab; &#x; &#; &#xZZ;",
        "&nbsp;non&nbsp;breaking&nbsp;spaces",
        "&hellip; &mdash; &ndash; &copy; &reg; &trade; &euro;",
        "&Jscr;ohn &HilbertSpace;ancock &checkmark;",
        "P&EACUTE;REZ BUNDESSTRA&SZLIG;E",
        "&NotEqualTilde; &nvlt; &bne;",
        "&amp without semicolon &unknownentity; &abcdefghijklmnopqrstuvwxyz;",
        "&aaaaaaaaaaaaaaaaaaaaaaaa; &aaaaaaaaaaaaaaaaaaaaaaaaa;",
        "1 < 2 &amp; 3 > 2",
        "no unescape here <b>&amp;</b>",
        "line one &amp;\nline two < &amp;\nline three &amp;",
        "&lt;|endoftext|&gt; &lt;|startoftext|&gt;",
        # special tokens in the text
        "<|startoftext|>",
        "<|endoftext|>",
        "a <|endoftext|> b",
        "a<|endoftext|>b<|startoftext|>c",
        "<|ENDOFTEXT|> <|StartOfText|>",
        "!<|endoftext|>! (<|startoftext|>)",
        "&amp; <|endoftext|> &amp;",
        "<|endoftext|",
        "<|ſtartoftext|> 'ſ",
        # accents and combining marks, composed and decomposed
        "café naïve résumé façade jalapeño",
        "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
        "Ångström Å Å",
        "e\u0301\u0301 a\u0323\u0302 o\u031b\u0301",
        "\u0301leading combining mark",
        "Zalgo: Z\u0351\u0357\u0300a\u0363\u0364l\u0346g\u0313o\u0308",
        "ḱ ǘ ǹ ẁ ṕ",
        "한국어 텍스트, 한글 자모",
        "Vietnamese: Tiếng Việt có dấu",
        "ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ ĳ Ĳ ǆ Ǆ ǅ ǈ ǋ ŉ",
        "ᾳ ᾼ ͅ a\u0345b !\u0345!",
        # case mapping Python's way
        "İstanbul İSTANBUL",
        "ΟΔΥΣΣΕΥΣ Σ ΣΑ ΑΣ ΑΣ. Α.Σ ΑΣ'Σ",
        "ΣΊΣΥΦΟΣ ΌΣΟΣ",
        "Straße STRASSE ẞ",
        "ǅemal ǈubav ǋego",
        "Kelvin K Ohm Ω Angstrom Å",
        "ΆΈΉΊΌΎΏ ΪΫ",
        "ԱԲԳ աբգ ა ბ გ Ⴀ",
        "Ⓐⓑ Ⓒ",
        "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝 𝘪𝘵𝘢𝘭𝘪𝘤",
        # scripts
        "Привет, мир! Фотография красивой девушки",
        "Γειά σου Κόσμε",
        "שלום עולם",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "হ্যালো বিশ্ব",
        "สวัสดีชาวโลก",
        "你好，世界！一只可爱的猫",
        "こんにちは世界、カタカナ、ひらがな",
        "ｶﾀｶﾅ ﾊﾝｶｸ",
        "ქართული ენა",
        "Հայերեն",
        "ᚠᚢᚦᚨᚱᚲ",
        "ꦗꦮ",
        "𐌰𐌱𐌲 gothic",
        "Tiếng Việt, Türkçe, Polski: zażółć gęślą jaźń",
        "ʃʒθð ɪʊ",
        "mixed English日本語русский123abc",
        # emoji
        "😀 😃 😄",
        "a 🐱 and a 🐶",
        "👍👍🏻👍🏼👍🏽👍🏾👍🏿",
        "👨‍👩‍👧‍👦 family",
        "🏳️‍🌈 🏴‍☠️ 🇯🇵 🇺🇸",
        "❤️ ❤ ♥️ ☺️",
        "🧑🏽‍💻 👩🏻‍🔬",
        "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f wales",
        "keycaps 1️⃣ #️⃣ *️⃣",
        "🫠🫡🫥 newer emoji",
        "✨sparkles✨ ⭐️ ★ ☆",
        # full-width and ideographic space
        "ＬＯＵＤ　ＮＯＩＳＥＳ",
        "ｆｕｌｌｗｉｄｔｈ！？＃１２３",
        "ｈｔｔｐ：／／ｅｘａｍｐｌｅ",
        "￣ overline ￤ ￥ ￦ ￩",
        "Ｕﾀｰﾝ",
        # whitespace of every kind
        "tab\tseparated\tvalues",
        "new\nlines\n\n\nhere",
        "carriage\rreturn\r\nwindows",
        "no\u00a0break\u00a0space",
        "em\u2003space thin\u2009space hair\u200aspace",
        "ideographic\u3000space",
        "line\u2028separator paragraph\u2029separator",
        "next\u0085line",
        "vertical\u000btab form\u000cfeed",
        "zero\u200bwidth\u200bspace",
        "zero\u200cwidth\u200dnon\u2060joiner",
        "\u00adsoft\u00adhyphen",
        "\ufeffbyte order mark",
        "info\u001cseparators\u001d\u001e\u001fhere",
        "\u001c\u001dedges\u001e\u001f",
        "mongolian\u180evowel separator",
        "ogham\u1680space",
        "narrow\u202fno-break",
        # control characters
        "bell\u0007 backspace\u0008 escape\u001b delete\u007f",
        "\u001b[31mred text\u001b[0m normal",
        "\u001b[1;32mbold green\u001b[m",
        "\u001b[٣mdigits\u001b[;;H",
        "\u001b]not an escape",
        "c1\u0080\u0081\u008d\u0090\u0093quoted\u0094\u0096\u009f",
        "deprecated\u206a\u206fformat",
        "annotation\ufff9a\ufffab\ufffbc\ufffc",
        "private\ue000use\uf8ff \U000f0000",
        "replacement \ufffd char",
        "noncharacters \ufdd0 \uffff",
        "unassigned \u0378 \U0001fffe",
        "new in unicode 15: \U00011f00\U00011f41 \U0001e4d0\U0001e4ec",
        "new letters: \U00010d4a\U00010d4b \U000105c0 \U0001e5d0",
        "cjk ext: \U00031350\U00031351 \U0002ebf0",
        # marks Python's Unicode 14 does not know, next to marks it does: nothing may reorder
        "kawi a\U00011f41\u05b8 \u05b8\U00011f41 x\U00011f41\u0307",
        "ｶﾞ\U00011f41 ｶ\U00011f41ﾞ \U0001e4ec\u0301\U0001e4ef\u0316",
        # odd cases around the pattern
        "x'y x''y x'''y",
        "'''",
        "'",
        "ab'",
        "it'S It'S",
        "dog'ſ",
        "123abc456def",
        "a1b2c3",
        "①②③④",
        "π≈3.14, e≈2.71, √2, ∞, ∑, ∫",
        "½⅓¼⅕",
        "x² y³ z⁴ H₂O",
        "°C °F",
        "a\u0300\u0300\u0300",
        "ǅ",
        # long words and repetition
        "supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababababababababab",
        "the the the the the the the the the the",
        "hello " * 20,
        "!" * 50,
        "." * 100,
        "😀" * 30,
        "ab" * 200,
    ]
    c += long_prompts()
    return c


def random_strings(count, seed=20240611):
    """Random strings over the characters the tokenizer treats specially. Deterministic for a seed."""
    import html.entities
    import random
    import unicodedata

    rnd = random.Random(seed)
    names = sorted(html.entities.html5)
    marks = [cp for cp in range(0x300, 0x20000) if unicodedata.category(chr(cp)).startswith("M")]
    fixed = ["\r", "\n", "\r\n", "\t", " ", "  ", "\u2028", "\x85", "\x1b[", "\x1b[12;3m", "<", ">", "'",
             "'s", "'ll", "'RE", "\u03a3\u0391", "\u03a3", "\u0130", "\u017f", "<|endoftext|>", "<|startoftext|>",
             "<|ENDOFTEXT|>", "!", "!!", "&amp;", "&lt;", "\u0345", "\u3000", "\uff21", "\ufb01", "\u2019",
             "\U0001f44d\U0001f3fd", "\U00011f41", "\u00a0", "\u200d", "\ufeff", "\x00", "\x7f", "\x93"]

    def piece():
        r = rnd.random()
        if r < 0.25:
            return chr(rnd.choice([rnd.randint(0x20, 0x7E), rnd.randint(0xA0, 0x3000), rnd.randint(0x3000, 0xFFFF),
                                   rnd.randint(0x10000, 0x1FFFF), rnd.randint(0x20000, 0x10FFFF)]))
        if r < 0.35:
            return chr(rnd.choice(marks))
        if r < 0.45:
            return "&" + rnd.choice(names) + rnd.choice(["", ";"])
        if r < 0.5:
            num = rnd.randint(0, 0x11FFFF) if rnd.random() < 0.5 else rnd.randint(0, 300)
            form = rnd.choice(["%d", "x%x", "X%X"])
            return "&#" + form % num + rnd.choice([";", ";", ""])
        if r < 0.6:
            return rnd.choice(fixed)
        if r < 0.75:
            return chr(rnd.randint(0x61, 0x7A)) * rnd.randint(1, 3)
        return chr(rnd.randint(0x80, 0x2FF))

    out = []
    while len(out) < count:
        s = "".join(piece() for _ in range(rnd.randint(0, 25)))
        s = "".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF)
        out.append(s)
    return out


# ---- what transformers does ------------------------------------------------------------------------------

def clip_tokenizer(folder, **kwargs):
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), **kwargs)


def check_encoding_fix_unused(folder, tok, lines):
    """The C tokenizer leaves out ftfy's mojibake repair: no corpus line may depend on it."""
    plain = clip_tokenizer(folder)
    plain.fix_text = lambda text: ftfy.fix_text(text, fix_encoding=False)
    for i, s in enumerate(lines):
        if tok.encode(s) != plain.encode(s):
            sys.exit(f"corpus line {i + 1} ({s!r}) depends on ftfy's fix_encoding; change it")


def kohya_windows(tok, text, max_token_length):
    """sd-scripts' TokenizeStrategy._get_input_ids for one prompt (library/strategy_base.py), written out:
    tokenize to max_token_length + 2 with padding, then windows of 75 ids framed by the first and the
    last token, with the two fix-ups when the pad token is not EOS."""
    model_max = 77
    max_length = model_max if max_token_length in (None, 75) else max_token_length + 2
    ids = tok(text, padding="max_length", truncation=True, max_length=max_length).input_ids
    if max_length <= model_max:
        return [ids]
    windows = []
    for i in range(1, max_length - model_max + 2, model_max - 2):
        chunk = [ids[0]] + ids[i:i + model_max - 2] + [ids[-1]]
        if tok.pad_token_id != tok.eos_token_id:
            if chunk[-2] != tok.eos_token_id and chunk[-2] != tok.pad_token_id:
                chunk[-1] = tok.eos_token_id
            if chunk[1] == tok.pad_token_id:
                chunk[1] = tok.eos_token_id
        windows.append(chunk)
    return windows


def write_expected(path, tok, bang, lines, with_clean):
    with open(path, "w", encoding="utf-8") as f:
        for s in lines:
            row = {"ids": tok.encode(s, add_special_tokens=False),
                   "padded": tok(s, padding="max_length", truncation=True, max_length=77).input_ids}
            if "!" in s:
                row["bang"] = bang.encode(s, add_special_tokens=False)
            if with_clean:
                row["clean"] = whitespace_clean(ftfy.fix_text(s)).lower()
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_kohya(path, tok, bang, lines):
    """For each long prompt: windows with pad = EOS (SD 1.x, SDXL's first tokenizer), and with pad = 0
    from a tokenizer whose files declare pad_token "!" (SD 2.x, SDXL's second tokenizer)."""
    long = set(long_prompts())
    with open(path, "w", encoding="utf-8") as f:
        for i, s in enumerate(lines):
            if s not in long:
                continue
            for mtl in (75, 150, 225):
                for name, t in (("eos", tok), ("zero", bang)):
                    row = {"line": i + 1, "max_token_length": mtl, "pad": t.pad_token_id, "pad_is": name,
                           "windows": kohya_windows(t, s, mtl)}
                    f.write(json.dumps(row) + "\n")


def add_random_ids(folder, name, rows):
    """The ids of the random strings with one vocabulary; strings that need ftfy's mojibake repair are
    marked and left out of the checks."""
    tok, bang, plain = clip_tokenizer(folder), clip_tokenizer(folder, pad_token="!"), clip_tokenizer(folder)
    plain.fix_text = lambda text: ftfy.fix_text(text, fix_encoding=False)
    for row in rows:
        ids = tok.encode(row["text"], add_special_tokens=False)
        if ids != plain.encode(row["text"], add_special_tokens=False):
            row["mojibake"] = True
        row[name] = ids
        if "!" in row["text"]:
            row[name + "_bang"] = bang.encode(row["text"], add_special_tokens=False)


def generate(folder, out_prefix, lines, with_clean):
    tok = clip_tokenizer(folder)
    # Constructed with pad_token "!", transformers makes "!" an added special token, as it does when it
    # loads SDXL's tokenizer_2 (whose files declare it).
    bang = clip_tokenizer(folder, pad_token="!")
    assert tok.pad_token_id == tok.eos_token_id and bang.pad_token_id == 0
    check_encoding_fix_unused(folder, tok, lines)
    write_expected(os.path.join(OUT, f"expected_{out_prefix}.jsonl"), tok, bang, lines, with_clean)
    write_kohya(os.path.join(OUT, f"kohya_{out_prefix}.jsonl"), tok, bang, lines)


def main():
    assert transformers.__version__ == "4.44.2", transformers.__version__
    os.makedirs(OUT, exist_ok=True)
    lines = corpus()
    assert len(lines) == len(set(lines)), "duplicate corpus lines"
    with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")

    merges = learn_merges(TRAINING_TEXT, N_SMALL_MERGES)
    assert len(merges) == N_SMALL_MERGES, len(merges)
    write_hf_files(OUT, merges)
    generate(OUT, "small", lines, with_clean=True)
    print(f"{len(lines)} corpus lines, {len(merges)} small merges")
    rows = [{"text": s, "clean": whitespace_clean(ftfy.fix_text(s)).lower()} for s in random_strings(N_RANDOM)]
    add_random_ids(OUT, "small", rows)

    if os.path.exists(REAL):
        text = gzip.open(REAL).read().decode("utf-8")
        real_merges = [tuple(m.split()) for m in text.split("\n")[1:CLIP_MERGES + 1]]
        with tempfile.TemporaryDirectory() as tmp:
            write_hf_files(tmp, real_merges)
            assert len(json.load(open(os.path.join(tmp, "vocab.json"), encoding="utf-8"))) == 49408
            generate(tmp, "real", lines, with_clean=False)
            add_random_ids(tmp, "real", rows)
        print("real vocabulary: written")
    else:
        print(f"{REAL} not found: expected_real.jsonl and kohya_real.jsonl left as they are, random.jsonl "
              "written without real ids")
    with open(os.path.join(OUT, "random.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} random strings, {sum('mojibake' in r for r in rows)} of them need mojibake repair")


if __name__ == "__main__":
    main()
