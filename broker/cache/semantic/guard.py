"""Veto semantic hits between prompts that differ by a meaning-flipping detail.

Sentence embeddings score "cannot log in" / "cannot log out", "sort ascending" / "sort
descending" or "invoice #123 $450" / "invoice #124 $980" as near-identical, yet serving one's
answer for the other is wrong. :func:`guard_reason` compares the two final user turns and
returns a short reason when they differ in:

- negation (not, no, never, n't, cannot, without, ...),
- an antonym pair or a mutually exclusive choice (in/out, on/off, enable/disable, languages,
  weekdays, units, programming languages, ...), including un-/dis-/in-/non- prefixes,
- numbers, amounts, dates or ids (any digit sequence, number words),
- quoted strings or code identifiers (snake_case, camelCase, dotted.names, calls()),
- language (script, or stop words of a few Latin-script languages),
- direction ("EUR to USD" / "USD to EUR": the same words around to/from/than swapped).

It is deliberately general (word lists, not a model fitted to a dataset) and errs toward
"no hit": a veto costs one provider call, a wrong hit costs a wrong answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from broker.cache.semantic.text import STOP_WORDS, stem, tokens

__all__ = ["guard_reason"]

_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "nowhere",
        "neither",
        "nor",
        "cannot",
        "without",
        "unable",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "cant",
        "wont",
        "couldnt",
        "shouldnt",
        "wouldnt",
        "havent",
        "hasnt",
        "hadnt",
        "aint",
    ]
)

# Each line: words of one family; two prompts using *different* members of a family
# (one only in a, another only in b) mean different things.
_EXCLUSIVE = """
in out | on off | up down | open close | start stop | begin end | enter exit | login logout
ascending descending | asc desc | increase decrease | increment decrement | raise lower
before after | earlier later | past future | first last | previous next | old new | young old
add remove | add delete | insert delete | create delete | include exclude | allow deny block
min max | minimum maximum | lowest highest | least most | less more | fewer more | shortest longest
left right | top bottom | above below | over under | inside outside | internal external
north south east west | forward backward | horizontal vertical | front back | upper lower
uppercase lowercase | upload download | import export | send receive | push pull | input output
buy sell | win lose | pass fail | accept reject | approve reject | true false | yes no
good bad | great terrible awful | best worst | better worse | positive negative neutral
happy sad | love hate | like dislike | agree disagree | pros cons | advantage disadvantage
benefit risk | cheap expensive | cheapest expensive | easy hard difficult | simple complex
fast slow | faster slower | fastest slowest | big small | bigger smaller | large small
larger smaller | largest smallest | high low | higher lower | hot cold | warm cool | wet dry
heavy light | long short | longer shorter | strong weak | rich poor | safe dangerous
legal illegal | public private | local remote | client server | sync async | online offline
read write | encrypt decrypt | encode decode | compress decompress | serialize deserialize
enable disable | show hide | lock unlock | mount unmount | install uninstall | subscribe unsubscribe
connect disconnect | attach detach | follow unfollow | block unblock | mute unmute | pause resume
success failure | error warning | debit credit | income expense | profit loss | asset liability
male female | man woman | men women | boy girl | husband wife | mother father | son daughter
day night | morning evening night | summer winter spring autumn fall | today tomorrow yesterday
monday tuesday wednesday thursday friday saturday sunday
january february march april may june july august september october november december
english french german spanish italian portuguese dutch russian chinese japanese korean arabic hindi
python java javascript typescript ruby php golang rust kotlin swift scala perl haskell
sql nosql | mysql postgresql postgres sqlite mongodb redis | windows linux macos android ios
celsius fahrenheit kelvin | km mile miles | kg pound pounds lbs | meter meters feet foot
usd eur gbp jpy inr cny | dollar euro pound rupee yen yuan | dollars euros rupees
red green blue yellow black white orange purple pink brown grey gray
spam ham | toxic safe | abusive respectful | fake real genuine | formal informal casual
summary detail | short long | brief detailed | json xml yaml csv
upgrade downgrade | sender receiver recipient | source destination target | buyer seller
lender borrower | employer employee | teacher student | parent child | host guest | winner loser
import export | upstream downstream | prefix suffix | head tail | minimize maximize
"""

_PREFIXES = ("un", "dis", "in", "im", "il", "ir", "non", "non-", "anti", "de")
_PIVOTS = frozenset(["to", "into", "from", "than", "vs", "versus", "over", "against"])
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1e6",
    "billion": "1e9",
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "half": "0.5",
    "twice": "2",
    "double": "2",
    "triple": "3",
    "dozen": "12",
    "once": "1",
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_QUOTED = re.compile(
    r"\"([^\"]{1,300})\"|“([^”]{1,300})”|`([^`]{1,300})`|(?<!\w)'([^']{1,300})'(?!\w)"
)
_IDENT = re.compile(
    r"\b(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*\b"  # dotted.name, file.ext
    r"|\b[a-z]+_\w+\b|\b_\w+\b"  # snake_case, _private
    r"|\b[a-z]+[A-Z]\w*\b"  # camelCase
    r"|\b[A-Za-z_]\w*(?=\()"  # call(
    r"|--?[a-z][\w-]*"  # --flags
)
_LANG_STOP = {
    "en": "the and is are of to in what how why which do does i you it for on with",
    "es": "el la los las de que y es en por para una un cómo qué cuál con se tú eres está",
    "fr": "le la les de des et est un une que qui pour dans avec comment pourquoi ce je tu vous",
    "de": "der die das und ist ein eine nicht ich du bist sie wir wie was warum mit für auf zu den",
    "it": "il lo gli della di che è e un una per con come perché non sono",
    "pt": "o os as de que e é um uma para com como por não são do da",
    "nl": "de het een en is van dat niet ik hoe wat waarom met voor op zijn",
}
_LANG_SETS = {lang: frozenset(words.split()) for lang, words in _LANG_STOP.items()}


def _families() -> dict[str, set[int]]:
    """stem -> ids of the families it belongs to (built once per call site via the cache)."""
    out: dict[str, set[int]] = {}
    groups = [g for line in _EXCLUSIVE.strip().splitlines() for g in line.split("|")]
    for gid, group in enumerate(groups):
        for word in group.split():
            out.setdefault(stem(word), set()).add(gid)
    return out


_FAMILIES: dict[str, frozenset[int]] = {k: frozenset(v) for k, v in _families().items()}


def _script(text: str) -> str | None:
    """The dominant Unicode script of the letters in ``text`` (first word of the char name)."""
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            counts[name.split(" ", 1)[0] if name else "?"] += 1
    if not counts:
        return None
    script, n = counts.most_common(1)[0]
    return script if n >= 0.6 * sum(counts.values()) else "mixed"


def _language(words: list[str]) -> str | None:
    """A Latin-script language guessed from stop words, or None when unsure."""
    scores = sorted(
        ((len(_LANG_SETS[lang] & set(words)), lang) for lang in _LANG_SETS), reverse=True
    )
    (best, lang), (second, _) = scores[0], scores[1]
    return lang if best >= 2 and best > second else None


def _numbers(text: str, words: list[str]) -> Counter[str]:
    found = Counter(m.group(0).replace(",", "") for m in _NUMBER.finditer(text))
    found.update(_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS)
    return found


def _quoted(text: str) -> Counter[str]:
    return Counter(
        next(g for g in m.groups() if g is not None).strip() for m in _QUOTED.finditer(text)
    )


def _flipped_pair(only_a: set[str], only_b: set[str]) -> tuple[str, str] | None:
    for x in only_a:
        fx = _FAMILIES.get(x)
        for y in only_b:
            if fx and fx & _FAMILIES.get(y, frozenset()):
                return x, y
            for p in _PREFIXES:
                if (y == p + x or x == p + y) and min(len(x), len(y)) >= 3:
                    return x, y
    return None


def _direction_swapped(wa: list[str], wb: list[str]) -> bool:
    if not (_PIVOTS & set(wa) and _PIVOTS & set(wb)):
        return False
    ca = [stem(w) for w in wa if w not in STOP_WORDS or w in _PIVOTS]
    cb = [stem(w) for w in wb if w not in STOP_WORDS or w in _PIVOTS]
    return Counter(ca) == Counter(cb) and ca != cb


def guard_reason(a: str, b: str) -> str | None:
    """Why ``a`` and ``b`` must not share an answer, or None when no flip is detected."""
    if a.strip() == b.strip():
        return None
    sa, sb = _script(a), _script(b)
    if sa and sb and sa != sb:
        return f"different script ({sa.lower()} vs {sb.lower()})"
    wa, wb = tokens(a), tokens(b)
    la, lb = _language(wa), _language(wb)
    if la and lb and la != lb:
        return f"different language ({la} vs {lb})"
    neg_a, neg_b = sum(w in _NEGATIONS for w in wa), sum(w in _NEGATIONS for w in wb)
    if (neg_a > 0) != (neg_b > 0):
        return "negation differs"
    if _numbers(a, wa) != _numbers(b, wb):
        return "numbers or ids differ"
    if _quoted(a) != _quoted(b):
        return "quoted text differs"
    if Counter(_IDENT.findall(a)) != Counter(_IDENT.findall(b)):
        return "code identifiers differ"
    stems_a, stems_b = Counter(stem(w) for w in wa), Counter(stem(w) for w in wb)
    pair = _flipped_pair(set(stems_a - stems_b), set(stems_b - stems_a))
    if pair:
        return f"opposite or exclusive words ({pair[0]} vs {pair[1]})"
    if _direction_swapped(wa, wb):
        return "direction differs (same words, swapped around to/from/than)"
    return None
