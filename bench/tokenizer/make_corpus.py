#!/usr/bin/env python3
"""Writes the tokenizer benchmark corpus: ~4 MB of mixed text, the same bytes on every run.

    make_corpus.py OUT [MEGABYTES]

Seeded pseudo-random text from small built-in word and character lists, by share of bytes:
English prose 45 %, source code 25 %, CJK (Chinese/Japanese) 12 %, other European prose 8 %, emoji-rich
chat 10 %. Nothing is read from outside this file, so the corpus depends on no data set."""
import random
import sys

EN = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
      "they you were her she there been one all we their has would when if so no what can more out its said about "
      "into than them only other new some could time these two may first then do any like my now over such our "
      "man me even most made after also did many before must through back years where much your way well down "
      "should because each just those people how too little state good very make world still own see men work "
      "long get here between both life being under never day same another know while last might us great old year "
      "off come since against go came right used take three himself few house use during without again place "
      "American around however home small found Mrs thought went say part once general high upon school every "
      "don't does got united left number course war until always away something fact though water less public put "
      "think almost hand enough far took head yet government system better set told nothing night end why called "
      "didn't eyes find going look asked later knew point next program city business give group toward young let "
      "room president side social given present several order national possible rather second face per among form "
      "important often things looked early white case John become large big need four within felt along children "
      "saw best church ever least power development light thing seemed family interest want members mind country "
      "area others although turned done open God service certain kind problem began different door thus help "
      "sense means whole matter perhaps itself York it's times law human line above name example action company "
      "hands local show whether five history gave today either act feet across taken past quite anything seen "
      "having death week experience body word half really field am car words already themselves I'm information "
      "tell together college shall money period held keep sure probably free seems political real behind "
      "committee proposal tokenizer throughput benchmark inference server latency request model weights").split()
CODE_WORDS = ("size count index buffer tokens result value config model layer weight input output offset length "
              "cache state request handle stream batch vocab rank piece merge text bytes error status path name "
              "data item node next prev begin end first last key map list queue thread worker").split()
CJK = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过"
       "家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知全回部长"
       "の に は を た が で て と し れ さ ある いる も する から な こと として い や れる など なっ ない この ため "
       "その あっ よう また もの という あり まで られ なる へ か だ これ によって により おり より による ず なり "
       "東京 大学 研究 日本 世界 技術 情報 言語 模型 計算 速度 文字 問題 結果 今日 天気 電車 会社 時間").split()
EU = ("été über Straße naïve façade déjà vu señor mañana niño São Paulo Zürich Kraków Łódź Ångström fjord smörgåsbord "
      "où garçon crème brûlée voilà Größe müssen für schön ça también pequeño información educación "
      "Привет мир это тест русский язык скорость токенизатор Ελληνικά γλώσσα δοκιμή").split()
EMOJI = ["😀", "😂", "🥲", "😍", "🤔", "👍", "👍🏽", "🙏", "🔥", "🚀", "✨", "🎉", "❤️", "💯", "🤖", "🧠", "🌍",
         "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "☕", "🍕", "📈", "⚡", "✅", "❌", "🐍", "🦀"]


def sentence(rng, words, lo=6, hi=22):
    ws = [rng.choice(words) for _ in range(rng.randint(lo, hi))]
    s = " ".join(ws)
    if rng.random() < 0.3:
        k = rng.randrange(len(ws))
        ws[k] = ws[k] + ","
        s = " ".join(ws)
    if rng.random() < 0.15:
        s += " " + str(rng.randint(0, 99999))
    return s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"])


def prose(rng, words):
    return " ".join(sentence(rng, words) for _ in range(rng.randint(3, 8))) + "\n\n"


def ident(rng):
    parts = [rng.choice(CODE_WORDS) for _ in range(rng.randint(1, 3))]
    return rng.choice(["_".join(parts), parts[0] + "".join(p.title() for p in parts[1:])])


def code(rng):
    if rng.random() < 0.5:  # C++
        f, a, b = ident(rng), ident(rng), ident(rng)
        body = "".join(f"    {rng.choice(['int', 'size_t', 'auto', 'float'])} {ident(rng)} = {a}[{b} + {rng.randint(0, 64)}] * {rng.random():.4f}f;\n"
                       for _ in range(rng.randint(2, 6)))
        return (f"// {sentence(rng, EN, 4, 10)}\nstatic int {f}(const std::vector<int>& {a}, size_t {b}) {{\n"
                f"  for (size_t i = 0; i < {b}; ++i) {{\n{body}    if ({a}[i] == {rng.randint(0, 255)}) return -1;\n  }}\n"
                f"  return {rng.randint(0, 9)};\n}}\n\n")
    f, a = ident(rng), ident(rng)
    body = "".join(f"        {ident(rng)} = {a}.get(\"{rng.choice(CODE_WORDS)}\", {rng.randint(0, 100)})\n"
                   for _ in range(rng.randint(2, 5)))
    return (f"def {f}({a}, *, limit={rng.randint(1, 999)}):\n    \"\"\"{sentence(rng, EN, 4, 12)}\"\"\"\n"
            f"    for key, value in sorted({a}.items()):\n{body}        if value > limit:\n"
            f"            raise ValueError(f\"{{key}}: {{value!r}} > {{limit}}\")\n    return {{k: v for k, v in {a}.items()}}\n\n")


def cjk(rng):
    out = []
    for _ in range(rng.randint(2, 6)):
        out.append("".join(rng.choice(CJK) for _ in range(rng.randint(8, 30))) + rng.choice(["。", "、", "！", "？"]))
    return "".join(out) + "\n"


def chat(rng):
    out = []
    for _ in range(rng.randint(2, 6)):
        ws = [rng.choice(EN) for _ in range(rng.randint(3, 12))]
        for _ in range(rng.randint(1, 4)):
            ws.insert(rng.randrange(len(ws) + 1), "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3))))
        out.append(" ".join(ws))
    return "\n".join(out) + "\n"


def main():
    out_path = sys.argv[1]
    megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    rng = random.Random(20261128)
    kinds = [(lambda r: prose(r, EN), 0.45), (code, 0.25), (cjk, 0.12), (lambda r: prose(r, EU + EN[:60]), 0.08), (chat, 0.10)]
    target = int(megabytes * 1e6)
    done = [0] * len(kinds)
    parts = []
    total = 0
    while total < target:
        # pick the kind furthest below its share
        k = min(range(len(kinds)), key=lambda i: done[i] / kinds[i][1])
        s = kinds[k][0](rng)
        n = len(s.encode("utf-8"))
        done[k] += n
        total += n
        parts.append(s)
    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(parts))


if __name__ == "__main__":
    main()
