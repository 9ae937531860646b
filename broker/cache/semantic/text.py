"""Small, dependency-free text helpers shared by the guard and the decision features.

Tokens are lower-cased words (letters of any script, digits, apostrophes inside words);
contractions with "n't" become the word plus "not" so negation is seen uniformly. The stemmer
is a crude suffix stripper: enough to make "enabled"/"enable" and "closing"/"close" meet,
not a linguistic tool.
"""

from __future__ import annotations

import re

__all__ = ["STOP_WORDS", "content_stems", "stem", "tokens"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_SUFFIXES = ("ingly", "edly", "ings", "ing", "ied", "ies", "ed", "es", "s", "ly")

# English function words: ignored when comparing content. Negations, prepositions with a
# direction and number words are deliberately NOT here: the guard looks at them.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "so",
        "as",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "to",
        "from",
        "into",
        "onto",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "us",
        "our",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "please",
        "just",
        "also",
        "very",
        "really",
        "quite",
        "some",
        "any",
        "much",
        "many",
        "such",
        "own",
        "same",
        "other",
        "than",
        "too",
        "s",
        "t",
        "ll",
        "ve",
        "re",
        "d",
        "m",
        "get",
        "got",
        "make",
        "made",
        "way",
        "ways",
        "best",
        "good",
    ]
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; "can't" -> ["can", "not"], "isn't" -> ["is", "not"]."""
    out: list[str] = []
    for match in _WORD.finditer(text.lower().replace("’", "'")):
        word = match.group(0)
        if word in ("can't", "cannot"):
            out += ["can", "not"]
        elif word == "won't":
            out += ["will", "not"]
        elif word.endswith("n't"):
            out += [word[:-3], "not"]
        elif "'" in word:
            out.append(word.split("'", 1)[0])
        else:
            out.append(word)
    return out


def stem(word: str) -> str:
    """Strip one common English suffix and a final "e" (kept when the rest is short)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ied", "ies"):
                word += "y"
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def content_stems(words: list[str]) -> list[str]:
    """Stems of the tokens that are not stop words, in order."""
    return [stem(w) for w in words if w not in STOP_WORDS]
