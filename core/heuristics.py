"""The offline heuristic annotator: ratings that plain text statistics can give, without an LLM.

When no LLM is configured the tool still gets comparison features for the attributes a rule
can judge from the surface of a response; when an LLM is configured these ratings are shown
beside the LLM's with their per-attribute :func:`agreement`.

Every rating is one documented rule: count a few surface cues, then map the count onto the
0-3 scale of ``core/data/attributes.json`` with explicit bins (``_bin(x, (t1, t2, t3))`` is
the number of thresholds that ``x`` reaches, so a count below ``t1`` rates 0 and one at or
above ``t3`` rates 3). Fenced code blocks are removed before the textual cues are counted
(code is neither slang, nor a refusal, nor a question to the user); formatting and length
look at the whole response.

============================  ===========================================================
rating key                    rule
============================  ===========================================================
``lengthy``                   word count (whitespace split, as the store counts words)
``well_formatted``            kinds of structure present: headings (``#`` or a bold-only
                              line), a list (>= 2 bullet or numbered lines), a table (a
                              ``|---|`` separator row), a code fence, >= 2 paragraphs;
                              bins FORMAT_BINS over the number of kinds
``step_by_step``              the largest of: the longest run of numbered markers 1, 2, 3...
                              in order (line starts or inline), the distinct "Step N"
                              mentions, the sequence words starting a sentence (first,
                              second, next, then, after that, finally...); STEP_BINS
``informal``                  emoji (Unicode pictograph ranges, ASCII emoticons) + slang
                              tokens (lol, gonna, btw, omg...) + one point per
                              EXCLAIM_PER_POINT exclamation marks; INFORMAL_BINS
``admits_limits``             LIMIT_STRONG_WEIGHT per admission of inability, refusal or
                              own mistake ("I can't", "I cannot", "I'm not able", "as an
                              AI", "I don't know", "I was wrong"...) plus 1 per hedge or
                              apology ("I'm not sure", "I could be wrong", "I apologize",
                              "sorry, but", "unfortunately, I"); LIMITS_BINS. Sentences
                              copied verbatim from the query do not count
``interactive``               sentences that invite the user to go on: a question that
                              addresses the user ("you", "shall I") or an invitation
                              ("let me know", "would you like", "feel free to"...);
                              INTERACTIVE_BINS. Sentences copied from the query do not count
``repetitive``                the larger of: REPETITIVE_BINS over the larger share of
                              repeated sentences or of repeated word NGRAM_N-grams, and
                              REPEATED_SENTENCE_BINS over the count of verbatim repeated
                              sentences. Negated into ``non_repetitive`` by
                              :func:`core.features.resolve`
``supporting_materials``      sentences holding a source cue: a URL (not copied from the
                              query), a citation marker [1], an author-year citation, a DOI
                              / arXiv id, a source phrase ("according to", "source:", "a
                              study by"...); plus at most
                              QUOTE_MAX_POINTS for quotations that are attributed ("said",
                              "wrote", "-- Author") or block quotes; SUPPORT_BINS
``complex_language``          Gunning fog index (words per sentence and share of words
                              of >= 3 syllables); COMPLEX_BINS; None (not judged) below
                              COMPLEX_MIN_WORDS English words
============================  ===========================================================

Not covered (no key in the ratings, hence 0 = "no evidence" in the features): everything that
needs meaning (relevant, clear, rich_info, errors, the query-conditional attributes...).
``funny`` is deliberately left out: the only surface cues for it (laughter tokens, laughing
emoji) are cues of informal register that ``informal`` already counts, so a ``funny`` feature
would copy ``informal`` into a second, collinear column of the regression.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Mapping, Sequence

from . import features as _features
from .featureset import HEURISTIC
from .records import Feature, word_count

VERSION = "heuristic-v1"
#: The feature-set name in the ``features`` table.
SOURCE = HEURISTIC.name

#: The catalogue attributes these heuristics judge (attribute keys, in catalogue order).
COVERED: tuple[str, ...] = (
    "interactive",
    "complex_language",
    "supporting_materials",
    "well_formatted",
    "admits_limits",
    "step_by_step",
    "informal",
    "non_repetitive",
    "lengthy",
)

# ---------------------------------------------------------------------------------------------
# thresholds (bins map a count to 0-3: rating = number of thresholds reached)

#: kinds of structure present -> 0-3 (1 kind = 1, 2 kinds = 2, 3 or more = 3)
FORMAT_BINS = (1, 2, 3)
#: a list needs at least this many bullet or numbered lines
LIST_MIN_ITEMS = 2
#: paragraphs (blocks between blank lines) that count as paragraphing
PARAGRAPH_MIN = 2

#: ordered steps -> 0-3 (one marker alone is no procedure: 2 steps = 1, 3-4 = 2, 5+ = 3)
STEP_BINS = (2, 3, 5)

#: informal points (emoji + slang + exclamation points) -> 0-3 (1 = 1, 2-3 = 2, 4+ = 3)
INFORMAL_BINS = (1, 2, 4)
#: one informal point per this many exclamation marks ("Great!" alone is not informal)
EXCLAIM_PER_POINT = 3

#: limitation score -> 0-3 (a hedge alone = 1, one "I can't" = 2, two or more admissions = 3)
LIMITS_BINS = (1, 2, 4)
#: an admission of inability or a refusal weighs this many hedges ("I'm not sure", "sorry, but")
LIMIT_STRONG_WEIGHT = 2

#: sentences inviting the user -> 0-3 (1 = 1, 2 = 2, 3+ = 3)
INTERACTIVE_BINS = (1, 2, 3)

#: word n-gram length for the repetition ratio
NGRAM_N = 4
#: fewer n-grams than this: too short to judge repetition by n-grams (ratio 0)
NGRAM_MIN_COUNT = 12
#: sentences shorter than this many words are not compared ("Yes." twice is not repetition)
SENTENCE_MIN_WORDS = 4
#: repeated share -> 0-3 (< 8% = 0, < 20% = 1, < 35% = 2, else 3). On 2,784 real responses
#: (Auto-J pairwise test set) the median share is 0.4% and the 90th percentile 12%.
REPETITIVE_BINS = (0.08, 0.20, 0.35)
#: verbatim repeats of a sentence -> 0-3 (1 = 1, 2-3 = 2, 4+ = 3); the rating is the larger of
#: the two bins, since an exact repeat is repetitive however long the rest of the response is
REPEATED_SENTENCE_BINS = (1, 2, 4)

#: sourced sentences (+ quotation point) -> 0-3 (1 = 1, 2 = 2, 3+ = 3)
SUPPORT_BINS = (1, 2, 3)
#: a quotation counts when it has at least this many words
QUOTE_MIN_WORDS = 5
#: quotations are capped (dialogue in a story is not evidence)
QUOTE_MAX_POINTS = 1
#: a quotation is evidence only with an attribution verb this many characters around it
QUOTE_ATTRIBUTION_WINDOW = 40

#: Gunning fog index -> 0-3 (< 8 = 0 plain, < 12 = 1, < 16 = 2, 16+ = 3 dense)
COMPLEX_BINS = (8.0, 12.0, 16.0)
#: fewer English words than this: complexity is not judged (None)
COMPLEX_MIN_WORDS = 20
#: a word of at least this many syllables is "complex" (the fog index's definition)
COMPLEX_SYLLABLES = 3


def _bin(x: float, thresholds: Sequence[float]) -> int:
    """The number of thresholds that x reaches: 0..len(thresholds)."""
    return sum(1 for t in thresholds if x >= t)


# ---------------------------------------------------------------------------------------------
# text preparation

_FENCED_CODE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
_QUOTE_MARKS = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Text:
    """A response prepared once for all the rules."""

    full: str  # line ends and curly quotes normalised
    prose: str  # without fenced code blocks
    sentences: tuple[str, ...]  # of the prose: split after . ! ? and at line breaks
    lower: str  # the prose in lower case (the phrase rules match lower-case patterns: fast)
    lower_sentences: tuple[str, ...]

    @cached_property
    def sentence_words(self) -> tuple[list[str], ...]:
        """The words of each lower-case sentence. Together they are the words of ``lower``: a sentence break is
        white space, which no word holds, so the repetition rules split the text into words once."""
        return tuple(_WORD.findall(sentence) for sentence in self.lower_sentences)

    @cached_property  # both repetition rules read them: computed once per prepared text
    def sentence_keys(self) -> tuple[str, ...]:
        """The words of each sentence of SENTENCE_MIN_WORDS words or more, joined by spaces (in lower case)."""
        return tuple(" ".join(words) for words in self.sentence_words if len(words) >= SENTENCE_MIN_WORDS)


def prepare(text: str | Text | None) -> Text:
    if isinstance(text, Text):
        return text
    full = str(text).replace("\r\n", "\n").replace("\r", "\n").translate(_QUOTE_MARKS) if text else ""
    prose = _FENCED_CODE.sub("\n", full)
    sentences = tuple(s for s in (p.strip() for p in _SENTENCE_SPLIT.split(prose)) if s)
    return Text(full, prose, sentences, prose.lower(), tuple(s.lower() for s in sentences))


def _copied_from(query: str | None):
    """A test for response sentences copied verbatim from the query (a rewrite or an edit of
    the user's text): "I don't know" quoted from the user is not the response admitting it."""
    q = _SPACES.sub(" ", prepare(query).full.lower())  # sentences are compared in lower case
    if not q.strip():
        return lambda sentence: False

    @lru_cache(maxsize=None)  # a response that repeats a sentence asks once
    def copied(sentence: str) -> bool:
        return _SPACES.sub(" ", sentence.lower()) in q

    return copied


# ---------------------------------------------------------------------------------------------
# well_formatted

_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S|^[ \t]*\*\*[^*\n]{1,80}\*\*:?[ \t]*$", re.M)
_BULLET_LINE = re.compile(r"^[ \t]*[-*+\u2022][ \t]+\S", re.M)
_NUMBERED_LINE = re.compile(r"^[ \t]*\d{1,3}[.)][ \t]+\S", re.M)
# written so that no two adjacent parts can match the same spaces (no quadratic backtracking)
_TABLE_SEPARATOR = re.compile(r"^[ \t]*(?:\|[ \t]*)?:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+(?:\|[ \t]*)?$", re.M)
_FENCE_LINE = re.compile(r"^[ \t]*(```|~~~)", re.M)
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def format_kinds(text: str | Text) -> list[str]:
    """The kinds of structure a response uses: headings, list, table, code, paragraphs."""
    full = prepare(text).full
    kinds = []
    if _HEADING.search(full):
        kinds.append("headings")
    if len(_BULLET_LINE.findall(full)) >= LIST_MIN_ITEMS or len(_NUMBERED_LINE.findall(full)) >= LIST_MIN_ITEMS:
        kinds.append("list")
    if _TABLE_SEPARATOR.search(full):
        kinds.append("table")
    if len(_FENCE_LINE.findall(full)) >= 2:
        kinds.append("code")
    if sum(1 for block in _BLANK_LINES.split(full) if block.strip()) >= PARAGRAPH_MIN:
        kinds.append("paragraphs")
    return kinds


# ---------------------------------------------------------------------------------------------
# step_by_step

#: one or two digits at a line start or after a space, then "." or ")" and text: the first digit is matched
#: before its lookbehind (nothing but a space, or nothing, before it), so the engine skips to digits (3x faster)
_NUMBER_MARKER = re.compile(r"(\d(?<!\S\d)\d?)[.)](?=[ \t]+\S)")
_STEP_MENTION = re.compile(r"\bstep[ \t]*(\d{1,2})\b")
_SEQUENCE_WORD = re.compile(
    r"(?:^|(?<=[.!?:])|\n)[ \t]*(?:[-*+][ \t]+)?"
    r"(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|next|then|after that|afterwards|finally|lastly)\b",
    re.M,
)


def _ordered_run(numbers: Sequence[int]) -> int:
    """The longest run 1, 2, 3, ... in order of appearance (a 1 restarts the run)."""
    best = cur = 0
    for n in numbers:
        if n == cur + 1:
            cur += 1
        elif n == 1:
            cur = 1
        best = max(best, cur)
    return best


def step_count(text: str | Text) -> int:
    """The number of ordered steps: the best of numbered markers in order, distinct "Step N"
    mentions, and sequence words opening a sentence."""
    t = prepare(text)
    numbered = _ordered_run([int(m) for m in _NUMBER_MARKER.findall(t.prose)])
    mentions = len({int(m) for m in _STEP_MENTION.findall(t.lower)})
    sequence = len(_SEQUENCE_WORD.findall(t.lower))
    return max(numbered, mentions, sequence)


# ---------------------------------------------------------------------------------------------
# informal

#: pictographic emoji: emoticons, symbols & pictographs, transport, supplemental and extended
#: pictographs, mahjong / cards / enclosed supplements (incl. flags), misc symbols and dingbats
#: (without the ballot boxes U+2610-2612 and check / ballot marks U+2713-2717, which formal
#: checklists use), and a few stand-alone emoji (star, circle, wavy dash...).
_EMOJI = re.compile(
    "[\U0001F300-\U0001FAFF\U0001F000-\U0001F2FF"
    "\u2600-\u260F\u2613-\u2712\u2718-\u27BF"
    "\u2B50\u2B55\u2B1B\u2B1C\u2934\u2935\u3030\u303D\u3297\u3299]"
)
_SKIN_TONES = re.compile("[\U0001F3FB-\U0001F3FF]")
# Each alternative starts with its literal character and checks what precedes it afterwards (":)" not after a
# word, "<3" not after a word, "xD" as a word), which is (?<![\w:/]):..., (?<!\w)<3 and \bxD\b: a pattern that
# opens on a character lets the regex engine skip to the next candidate instead of trying every position
# (5x faster on real responses).
_EMOTICON = re.compile(r"[:;](?<![\w:/][:;])[-']?[)(DPp3\]](?![\w)(])|<(?<!\w<)3(?!\d)|x(?<!\wx)D\b")
_SLANG = re.compile(
    r"\b(?:lol+|lolz|lmao|rofl|omg|btw|tbh|imo|imho|idk|ngl|smh|gonna|wanna|gotta|kinda|sorta|"
    r"lemme|gimme|dunno|y'all|ain't|yeah|yep|yup|nope|nah|dude|bro|cuz|woah|whoa|yay|ugh|meh|"
    r"lowkey|highkey|no biggie|legit|vibes?|(?:ha){2,}|(?:he){2,})\b"
)


def informal_points(text: str | Text) -> int:
    """Emoji + ASCII emoticons + slang tokens + one point per EXCLAIM_PER_POINT '!'."""
    t = prepare(text)
    prose = t.prose
    emoji = len(_EMOJI.findall(prose)) - len(_SKIN_TONES.findall(prose))
    emoticons = len(_EMOTICON.findall(prose))
    slang = len(_SLANG.findall(t.lower))
    exclaim = prose.count("!") // EXCLAIM_PER_POINT
    return emoji + emoticons + slang + exclaim


# ---------------------------------------------------------------------------------------------
# admits_limits

#: admissions of inability, refusals and admitted mistakes (weight LIMIT_STRONG_WEIGHT)
_LIMITS_STRONG = re.compile(
    "|".join(
        (
            # "I can't", except idioms that admit nothing ("I can't wait", "I can't stress enough")
            r"\bi (?:can't|cannot|can not)\b(?! (?:wait|stress|emphasi[sz]e|overstate|believe|thank|help but)\b)",
            r"\bi(?:'m| am) (?:not able|unable|not qualified|not capable|not in a position)\b",
            r"\bas an ai\b",
            r"\bas a (?:large )?language model\b",
            r"\bi(?:'m| am) (?:just |only )?an ai\b",
            r"\bi (?:don't|do not) (?:know|have (?:access|the ability|real-time|personal|enough information))\b",
            r"\bi (?:must decline|won't be able|will not be able)\b",
            r"\bmy knowledge (?:cutoff|cut-off)\b",
            r"\bbeyond my (?:capabilities|knowledge|abilities)\b",
            r"\bi (?:made a mistake|was wrong|stand corrected)\b",
            r"\bmy mistake\b",
        )
    )
)
#: hedges and apologies (weight 1): uncertainty or regret, short of saying "I cannot"
_LIMITS_WEAK = re.compile(
    r"\bi(?:'m| am) not (?:sure|certain)\b|\bi (?:could|might|may) be wrong\b"
    r"|\bi apologi[sz]e\b|\bmy apologies\b|\b(?:i'm|i am) sorry,? but\b|\bunfortunately,? i\b"
)


def _limit_weight(s: str) -> int:
    return LIMIT_STRONG_WEIGHT * len(_LIMITS_STRONG.findall(s)) + len(_LIMITS_WEAK.findall(s))


def limit_score(text: str | Text, query: str = "") -> int:
    """LIMIT_STRONG_WEIGHT per admission of inability / refusal / own mistake, 1 per hedge or
    apology, over the sentences not copied from the query."""
    t = prepare(text)
    if not (_LIMITS_STRONG.search(t.lower) or _LIMITS_WEAK.search(t.lower)):
        return 0
    copied = _copied_from(query)
    weights = ((_limit_weight(s), s) for s in t.lower_sentences)
    return sum(w for w, s in weights if w and not copied(s))


# ---------------------------------------------------------------------------------------------
# interactive

_INVITATION = re.compile(
    r"\blet me know\b|\bwould you like\b|\bdo you (?:want|need|have|prefer)\b|\bfeel free to\b"
    r"|\bif you have any (?:other |more |further )?questions\b"
    r"|\b(?:can|could) you (?:tell|share|clarify|provide|specify|explain|give|describe)\b"
    r"|\bwhat do you think\b|\btell me more\b|\b(?:shall|should) i\b"
)
_ADDRESSES_USER = re.compile(r"\byou(?:r|rs|'re|'d|'ll|'ve)?\b|\b(?:shall|should|may|can) i\b")
_TRAILING = " \t\"')]*_"  # closing marks after a question mark: 'Is it "x?"' is a question


def invitations(text: str | Text, query: str = "") -> int:
    """Sentences that invite the user to go on: an invitation phrase, or a question that
    addresses the user; sentences copied from the query do not count."""
    t = prepare(text)
    if "?" not in t.lower and not _INVITATION.search(t.lower):
        return 0
    copied = _copied_from(query)
    count = 0
    for sentence in t.lower_sentences:
        question = sentence.rstrip(_TRAILING).endswith("?")
        if (_INVITATION.search(sentence) or (question and _ADDRESSES_USER.search(sentence))) and not copied(sentence):
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# repetitive

_WORD = re.compile(r"\w+")


def repeated_sentences(text: str | Text) -> int:
    """How many sentences (of SENTENCE_MIN_WORDS words or more) repeat an earlier one."""
    keys = prepare(text).sentence_keys
    return len(keys) - len(set(keys))


def repetition_ratio(text: str | Text) -> float:
    """The larger of: the share of (long enough) sentences that repeat an earlier one, and the
    share of word n-grams that repeat an earlier one. 0 for text too short to judge."""
    t = prepare(text)
    keys = t.sentence_keys
    sentence_share = 1 - len(set(keys)) / len(keys) if len(keys) >= 2 else 0.0
    tokens = [w for words in t.sentence_words for w in words]  # _WORD.findall(t.lower), from the sentences
    count = len(tokens) - NGRAM_N + 1
    ngram_share = 0.0
    if count >= NGRAM_MIN_COUNT:
        grams = set(zip(*(tokens[i:] for i in range(NGRAM_N))))
        ngram_share = 1 - len(grams) / count
    return max(sentence_share, ngram_share)


# ---------------------------------------------------------------------------------------------
# supporting_materials

_URL = re.compile(r"\bhttps?://[^\s<>()\[\]\"'`]+|\bwww\.[^\s<>()\[\]\"'`]+")  # on lower case
_CITATION_MARK = re.compile(r"(?<![\w\]])\[\d{1,3}(?:[ \t]*[,\u2013-][ \t]*\d{1,3})*\]")
_AUTHOR_YEAR = re.compile(
    r"\([A-Z][A-Za-z'\-]+(?:\s+(?:et al\.?|and|&)(?:\s+[A-Z][A-Za-z'\-]+)?)?,?\s+(?:1[89]|20)\d{2}[a-z]?\)"
)
_DOI = re.compile(r"\b10\.\d{4,9}/\S+|\bdoi:\s*\S+|\barxiv:?\s*\d{4}\.\d{4,5}")
_SOURCE_PHRASE = re.compile(
    r"\baccording to\b|\bsources?:|\breferences?:|\bcited (?:in|by)\b|\bas reported (?:in|by)\b"
    r"|\b(?:a|one|recent|several) stud(?:y|ies) (?:by|from|in|published|found|show)"
    r"|\bresearch (?:shows|suggests|indicates|has shown|found)\b|\bpublished in\b|\bsee also\b"
)
#: cues matched on lower-case text (the author-year citation needs the capital letters)
_SOURCE_CUES = (_CITATION_MARK, _DOI, _SOURCE_PHRASE)
_QUOTED = re.compile(r'"([^"\n]{1,600})"')
_ATTRIBUTION = re.compile(
    r"\b(?i:said|says|wrote|writes|stated|states|noted|notes|argued|argues|observed|put it|famously)\b"
    r"|[\u2014\u2013][ \t]*[A-Z]|(?:^|\s)--?[ \t]*[A-Z]"  # "said ...", or "... -- Author"
)
_BLOCKQUOTE = re.compile(r"^[ \t]*>[ \t]*\S", re.M)


def _clean_url(url: str) -> str:
    return url.rstrip(".,;:!?").lower()


def _has_source(sentence: str, lower: str, query_urls: set[str]) -> bool:
    if {_clean_url(u) for u in _URL.findall(lower)} - query_urls:
        return True
    rest = _URL.sub(" ", lower)  # a DOI inside a link the user gave is not a new source
    return bool(_AUTHOR_YEAR.search(sentence)) or any(cue.search(rest) for cue in _SOURCE_CUES)


def support_cues(text: str | Text, query: str = "") -> int:
    """Sentences (or lines) that point to a source, plus at most QUOTE_MAX_POINTS for attributed
    quotations and block quotes. A sentence counts once however many cues it holds: "According
    to the WHO (https://who.int/...)" is one supported statement, not two."""
    t = prepare(text)
    prose = t.prose
    sourced = 0
    if _URL.search(t.lower) or _AUTHOR_YEAR.search(prose) or any(cue.search(t.lower) for cue in _SOURCE_CUES):
        query_urls = {_clean_url(u) for u in _URL.findall(prepare(query).lower)}
        sourced = sum(1 for s, low in zip(t.sentences, t.lower_sentences) if _has_source(s, low, query_urls))
    w = QUOTE_ATTRIBUTION_WINDOW
    quotes = sum(
        1
        for m in _QUOTED.finditer(prose)
        if len(m.group(1).split()) >= QUOTE_MIN_WORDS
        and _ATTRIBUTION.search(prose[max(0, m.start() - w) : m.start()] + " " + prose[m.end() : m.end() + w])
    )
    quotes += len(_BLOCKQUOTE.findall(prose))
    return sourced + min(quotes, QUOTE_MAX_POINTS)


# ---------------------------------------------------------------------------------------------
# complex_language

_ENGLISH_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_LETTER = re.compile(r"[A-Za-z]")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


@lru_cache(maxsize=1 << 16)
def syllables(word: str) -> int:
    """A vowel-group estimate of English syllables (a silent final e does not count)."""
    w = word.lower()
    n = len(_VOWEL_GROUPS.findall(w))
    if n > 1 and w.endswith("e") and not w.endswith(("le", "ee", "ye")):
        n -= 1
    return max(n, 1)


def fog_index(text: str | Text) -> float | None:
    """Gunning fog: 0.4 * (words per sentence + 100 * share of words of COMPLEX_SYLLABLES or
    more syllables), or None for text with fewer than COMPLEX_MIN_WORDS English words."""
    t = prepare(text)
    words = _ENGLISH_WORD.findall(t.prose)
    if len(words) < COMPLEX_MIN_WORDS:
        return None
    n_sentences = max(1, sum(1 for s in t.sentences if _LETTER.search(s)))
    complex_share = sum(1 for w in words if syllables(w) >= COMPLEX_SYLLABLES) / len(words)
    return 0.4 * (len(words) / n_sentences + 100 * complex_share)


# ---------------------------------------------------------------------------------------------
# the annotator


def rate(query: str, response: str) -> dict[str, float | None]:
    """Raw ratings of one response, keyed as :func:`core.features.resolve` expects (a fresh dict: the
    ratings of a (query, response) seen lately are kept, :func:`_rate`).

    0-3 ratings for the covered attributes (repetitiveness under ``repetitive``, which resolve
    negates), the word count under ``lengthy``, and None where a rating cannot be judged
    (complex language of a very short or non-English text). The query only serves to discount
    what the response copies from it: a URL the user gave is not a source, and a sentence
    quoted verbatim from the user's text is neither a refusal nor a question to the user.
    """
    return dict(_rate(query or "", "" if response is None else str(response)))


@lru_cache(maxsize=4096)
def _rate(query: str, response: str) -> dict[str, float | None]:
    """:func:`rate`, kept for the last few thousand (query, response) pairs: a response is rated again
    where it recurs: an experiment's baseline answer stands as response B beside each arm's; a scripted
    judge asked in both orders reads each pair's texts twice, after their features were computed; an
    AlpacaEval-style dataset pairs one reference output with each model's. The ratings are a pure function
    of the two texts (callers get a copy, so the kept dict is never changed); 4096 entries keep the memory
    small (a few MB for texts of a few hundred words)."""
    t = prepare(response)
    fog = fog_index(t)
    repetitive = max(_bin(repetition_ratio(t), REPETITIVE_BINS), _bin(repeated_sentences(t), REPEATED_SENTENCE_BINS))
    return {
        "lengthy": word_count(t.full),
        "well_formatted": _bin(len(format_kinds(t)), FORMAT_BINS),
        "step_by_step": _bin(step_count(t), STEP_BINS),
        "informal": _bin(informal_points(t), INFORMAL_BINS),
        "admits_limits": _bin(limit_score(t, query), LIMITS_BINS),
        "interactive": _bin(invitations(t, query), INTERACTIVE_BINS),
        "repetitive": repetitive,
        "supporting_materials": _bin(support_cues(t, query), SUPPORT_BINS),
        "complex_language": None if fog is None else _bin(fog, COMPLEX_BINS),
    }


def _field(sample: Any, name: str) -> str:
    value = sample.get(name) if isinstance(sample, Mapping) else getattr(sample, name, None)
    return "" if value is None else str(value)


def annotate(sample: Mapping[str, Any]) -> tuple[dict, dict]:
    """(ratings of response A, ratings of response B) for a stored sample row (or a Sample)."""
    query = _field(sample, "query")
    return rate(query, _field(sample, "response_a")), rate(query, _field(sample, "response_b"))


def features_for(sample: Mapping[str, Any]) -> list[Feature]:
    """The heuristic feature set of one sample (source SOURCE), one Feature per catalogue
    attribute; attributes outside COVERED come out 0 ("no evidence") with no scores."""
    ra, rb = annotate(sample)
    feats = _features.resolve(_field(sample, "id"), SOURCE, ra, rb, cases={}, provenance={"annotator": VERSION})
    for f in feats:
        if f.attribute not in COVERED:  # not judged: no score (resolve would count 0 errors)
            f.score_a = f.score_b = None
    return feats


# ---------------------------------------------------------------------------------------------
# agreement between two feature sets

_VALUES = (-1, 0, 1)


def _agreement_one(x: Sequence[int], y: Sequence[int]) -> dict[str, Any]:
    n = len(x)
    if n == 0:
        return {"n": 0, "equal": None, "kappa": None, "sign_agree": None, "n_nonzero": 0}
    equal = sum(1 for p, q in zip(x, y) if p == q) / n
    cx, cy = Counter(x), Counter(y)
    chance = sum(cx[v] * cy[v] for v in _VALUES) / (n * n)
    # both sides constant on the same value: chance agreement is 1 and kappa is 0/0
    kappa = None if chance >= 1 - 1e-12 else (equal - chance) / (1 - chance)
    both = [(p, q) for p, q in zip(x, y) if p != 0 and q != 0]
    sign_agree = sum(1 for p, q in both if p == q) / len(both) if both else None
    return {"n": n, "equal": equal, "kappa": kappa, "sign_agree": sign_agree, "n_nonzero": len(both)}


def agreement(a: Mapping[str, Sequence[int]], b: Mapping[str, Sequence[int]]) -> dict[str, dict]:
    """Per-attribute agreement of two feature sets over the same samples.

    ``a`` and ``b`` map an attribute key to its comparison values (-1, 0, +1) in the same sample
    order. For each attribute present in both (in ``a``'s order) the result holds ``n`` (samples),
    ``equal`` (share of identical values), ``kappa`` (Cohen's kappa over the three values; None
    when undefined: no samples, or both sets constant on the same value), ``sign_agree`` (among
    the ``n_nonzero`` samples where both are non-zero, the share with the same sign; None when
    there are none). Raises ValueError for lists of different lengths or values outside -1/0/+1.
    """
    out = {}
    for key, xs in a.items():
        if key not in b:
            continue
        x, y = list(xs), list(b[key])
        if len(x) != len(y):
            raise ValueError(f"agreement: {key!r} has {len(x)} values on one side and {len(y)} on the other")
        for v in (*x, *y):
            if v not in _VALUES:
                raise ValueError(f"agreement: {key!r} has value {v!r}; expected -1, 0 or +1")
        out[key] = _agreement_one([int(v) for v in x], [int(v) for v in y])
    return out
