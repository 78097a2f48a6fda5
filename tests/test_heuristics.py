"""The offline heuristic annotator: each rule on hand-written texts, its edge cases, the
features it yields, and the agreement statistics (DESIGN.md step 3, without an LLM)."""

import collections
import functools
import importlib.util
import random
import time

import pytest

from core import catalogue, heuristics
from core.heuristics import COVERED, SOURCE, VERSION, agreement, annotate, features_for, rate

RATING_KEYS = {
    "lengthy", "well_formatted", "step_by_step", "informal", "admits_limits",
    "interactive", "repetitive", "supporting_materials", "complex_language",
}
SCALED = RATING_KEYS - {"lengthy"}

PROSE = (
    "Apples and pears both grow on trees in temperate climates. They are harvested in autumn "
    "and keep for months in a cool cellar. Pears ripen best off the tree."
)

# (rating key, catalogue attribute, text that shows the attribute, text that does not)
CASES = [
    ("well_formatted", "well_formatted",
     "## Fruit\n\nTwo common choices:\n\n- **Apples**: crisp, keep well\n- **Pears**: soft, ripen off the tree\n",
     PROSE),
    ("well_formatted", "well_formatted",
     "| fruit | season |\n|---|---|\n| apple | autumn |\n\n```python\nprint('hi')\n```\n",
     PROSE),
    ("step_by_step", "step_by_step",
     "1. Preheat the oven to 200 degrees. 2. Mix the flour and butter. 3. Bake for twenty minutes.",
     PROSE),
    ("step_by_step", "step_by_step",
     "To install it:\n1. Download the installer.\n2. Run it.\n3. Restart the machine.\n4. Log in.",
     PROSE),
    ("step_by_step", "step_by_step",
     "First, download the file. Then, unzip it. Next, run the setup. Finally, restart.",
     PROSE),
    ("step_by_step", "step_by_step",
     "Step 1: open the box. Step 2: take out the parts. Step 3: follow the sheet.",
     PROSE),
    ("informal", "informal",
     "lol honestly that's gonna be so good 😂🔥 btw omg you'll love it!!!",
     "The proposal will be reviewed by the committee at its next scheduled meeting."),
    ("informal", "informal", "Wow! Amazing! Incredible! Best day ever! :)", PROSE),
    ("admits_limits", "admits_limits",
     "I'm sorry, but I can't help with that.",
     "The capital of France is Paris."),
    ("admits_limits", "admits_limits",
     "As an AI, I don\u2019t have access to real-time data, and I'm not sure about today's prices.",
     "Today's prices are listed on the exchange's website every morning."),
    ("interactive", "interactive",
     "Paris is the capital of France. Would you like some tips for visiting? What are you most interested in?",
     "Paris is the capital of France. It has about two million inhabitants."),
    ("interactive", "interactive",
     "Here is a draft of the email. Let me know if you want a more formal tone.",
     "Here is a draft of the email."),
    ("repetitive", "non_repetitive",
     " ".join(["The cat sat on the mat and looked at the door for a long time. "
               "Nobody came in, and the house stayed quiet all afternoon."] * 3),
     "The cat sat on the mat and looked at the door for a long time. Nobody came in. Later the "
     "dog woke up, stretched, and wandered into the kitchen looking for food. Outside, rain began "
     "to fall on the garden and the children ran indoors laughing."),
    ("supporting_materials", "supporting_materials",
     "According to the World Health Organization (https://www.who.int/news), about 10% of adults are affected.",
     "About ten per cent of adults are affected."),
    ("supporting_materials", "supporting_materials",
     "Transformers changed NLP [1]. Scaling laws followed (Kaplan et al., 2020).\n\n"
     "[1] Vaswani et al. doi:10.48550/arXiv.1706.03762",
     "Transformers changed NLP. Scaling laws followed."),
    ("complex_language", "complex_language",
     "Notwithstanding the apparent simplicity of the proposition, a comprehensive consideration of its "
     "interdependent components reveals considerable methodological sophistication. Consequently, a "
     "judicious practitioner ought to evaluate the multifaceted ramifications of each alternative.",
     "The cat sat on the mat. It was a sunny day. The dog ran in the park. We had tea and cake. "
     "Then we went home. It was fun."),
]

EDGE_TEXTS = [
    "", "   \n\t  ", "😀", "\u00a0\u2003", "?", "!!!", "#", "- ", "1.", "```", "```\nunclosed code",
    "| a |\n|---|", "\r\n\r\n", "\u200d\ufe0f", "👨\u200d👩\u200d👧 🇫🇷 👍🏽",
    "这是一个中文回答，没有空格。我不知道。", "هذا نص عربي", "Zoë naïve café \u0301", "\ud7ff \U0010ffff",
]


@pytest.fixture
def make_sample():
    """A stored sample row, as the store hands it to the annotator."""

    def make(response_a, response_b, query="Tell me about it.", sample_id="s1"):
        return {
            "id": sample_id, "dataset": "t", "query": query, "response_a": response_a,
            "response_b": response_b, "scenario_group": None, "cases": None,
        }

    return make


def value_of(feats, attribute):
    [f] = [f for f in feats if f.attribute == attribute]
    return f


# ---------------------------------------------------------------------------------------------
# COVERED and the shape of the ratings


def test_covered_attributes_are_catalogue_keys_in_catalogue_order():
    keys = catalogue.attribute_keys()
    assert set(COVERED) <= set(keys)
    assert list(COVERED) == [k for k in keys if k in COVERED]
    required = {"lengthy", "well_formatted", "step_by_step", "informal", "admits_limits",
                "interactive", "non_repetitive", "supporting_materials"}
    assert required <= set(COVERED)
    assert "relevant" not in COVERED and "funny" not in COVERED


def test_a_recurring_text_is_rated_once_and_each_caller_gets_its_own_ratings():
    """``rate`` keeps the ratings of recent (query, response) pairs (an experiment's baseline answer recurs
    beside every arm's): the same pair asks once, the query still counts, and a caller that changes its
    dict changes no one else's."""
    heuristics._rate.cache_clear()
    text = "I'm not sure, but it is probably Tuesday. Shall I check?"
    first = rate("When is it?", text)
    first["admits_limits"] = 99
    again = rate("When is it?", text)
    assert again == heuristics._rate.__wrapped__("When is it?", text) and again["admits_limits"] != 99
    assert heuristics._rate.cache_info().hits == 1
    quoted = rate("Edit this: I'm not sure, but it is probably Tuesday. Shall I check?", text)
    assert quoted != again  # the query is part of the key: a sentence copied from it is not the response's own


def test_every_covered_attribute_has_a_rating_under_its_annotated_key():
    ratings = rate("q", PROSE)
    for key in COVERED:
        attr = catalogue.attribute(key)
        assert (attr.annotated_as or attr.key) in ratings
    assert set(ratings) == RATING_KEYS
    assert SOURCE == "heuristic:v1" and VERSION == "heuristic-v1"


# ---------------------------------------------------------------------------------------------
# each rule: the positive text rates higher and the feature points its way


@pytest.mark.parametrize("key,attribute,positive,negative", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_positive_text_rates_higher_and_wins_the_feature(make_sample, key, attribute, positive, negative):
    pos, neg = rate("q", positive)[key], rate("q", negative)[key]
    assert pos is not None and neg is not None
    assert pos > neg, (pos, neg)
    expected = -1 if catalogue.attribute(attribute).rule == "negated" else 1
    assert value_of(features_for(make_sample(positive, negative)), attribute).value == expected
    assert value_of(features_for(make_sample(negative, positive)), attribute).value == -expected


def test_length_feature_follows_the_word_count_rule(make_sample):
    long = " ".join(["word"] * 120)
    short = " ".join(["word"] * 30)
    assert rate("q", long)["lengthy"] == 120
    assert value_of(features_for(make_sample(long, short)), "lengthy").value == 1
    assert value_of(features_for(make_sample(short, long)), "lengthy").value == -1
    assert value_of(features_for(make_sample(long, long + " more")), "lengthy").value == 0


def test_formatting_kinds_are_counted():
    text = "# Title\n\nIntro.\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```\ncode\n```"
    assert heuristics.format_kinds(text) == ["headings", "list", "table", "code", "paragraphs"]
    assert rate("q", text)["well_formatted"] == 3
    assert heuristics.format_kinds(PROSE) == []
    assert heuristics.format_kinds("One paragraph.\n\nAnother paragraph.") == ["paragraphs"]
    assert heuristics.format_kinds("- a single bullet") == []  # one item is not a list


def test_one_sequence_marker_alone_is_no_procedure():
    assert rate("q", "First, this is a plain remark about apples.")["step_by_step"] == 0
    assert rate("q", "It costs 5. Then it costs more.")["step_by_step"] == 0
    # numbers out of order are not steps
    assert heuristics.step_count("Chapter 7. Something. Chapter 3. Something else.") < 2
    assert heuristics.step_count("1. a\n2. b\n3. c\n4. d\n5. e") == 5
    assert rate("q", "1. a\n2. b\n3. c\n4. d\n5. e")["step_by_step"] == 3


@pytest.mark.parametrize(
    "text",
    [
        "I can't wait to see how your project turns out.",
        "I can't stress enough how important sleep is.",
        "Paris is the capital of France.",
    ],
)
def test_idioms_and_direct_answers_admit_nothing(text):
    assert rate("q", text)["admits_limits"] == 0


def test_refusal_outranks_hedge():
    hedge = rate("q", "I'm not sure, but it is probably Tuesday.")["admits_limits"]
    refusal = rate("q", "I cannot answer that. As an AI, I don't know your schedule.")["admits_limits"]
    assert 0 < hedge < refusal == 3


def test_rhetorical_questions_are_not_questions_to_the_user():
    text = "Why is the sky blue? Because air scatters short wavelengths more than long ones."
    assert rate("q", text)["interactive"] == 0
    assert rate("q", "Shall I go on with the next part?")["interactive"] == 1


def test_what_the_response_copies_from_the_query_does_not_count():
    query = "Fix the grammar: I dont know what to do. Can you tell me where it is? See https://example.com/page"
    response = "Fixed: I don't know what to do. Can you tell me where it is? See https://example.com/page"
    ratings = rate(query, response)
    assert ratings["supporting_materials"] == 0  # the user's own link
    assert ratings["interactive"] == 0  # the user's own question, rewritten
    # the same response without that query does count
    alone = rate("", response)
    assert alone["supporting_materials"] == 1 and alone["interactive"] == 1
    # "I don't know" copied verbatim from the user's text is not an admission
    assert rate("Edit this: I don't know where it went.", "I don't know where it went.")["admits_limits"] == 0
    assert rate("Where did it go?", "I don't know where it went.")["admits_limits"] == 2


def test_quotations_count_only_when_attributed():
    dialogue = 'She looked up and whispered "we should leave before the storm comes in".'
    attributed = 'As Einstein once said, "Imagination is more important than knowledge for science."'
    assert rate("q", dialogue)["supporting_materials"] == 0
    assert rate("q", attributed)["supporting_materials"] == 1
    assert rate("q", "> The only way out is through.\n\nSo keep going.")["supporting_materials"] == 1


def test_code_blocks_are_not_read_as_prose():
    code = "Here you go:\n\n```python\n# lol :) I can't\nprint('Would you like more?')\n```"
    ratings = rate("q", code)
    assert ratings["informal"] == 0
    assert ratings["admits_limits"] == 0
    assert ratings["interactive"] == 0
    assert ratings["well_formatted"] >= 1  # but the fence is formatting


def test_a_single_exclamation_is_not_informal():
    assert rate("q", "Great question! Paris is the capital of France.")["informal"] == 0


def test_emoji_are_counted_by_unicode_range():
    assert heuristics.informal_points("😀") == 1
    assert heuristics.informal_points("👍🏽") == 1  # a skin tone is not a second emoji
    assert heuristics.informal_points("✨ ☕ ❤ 🚀") == 4
    assert heuristics.informal_points("✓ done ✔ ✗ ☐ ☑") == 0  # checklist marks are not emoji
    assert heuristics.informal_points("https://example.com/a:b 10:30") == 0


def test_repetition_measures():
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    assert heuristics.repeated_sentences(" ".join([sentence] * 3)) == 2
    assert heuristics.repeated_sentences("Yes. Yes. Yes.") == 0  # too short to count
    assert heuristics.repetition_ratio(PROSE) < 0.05
    assert heuristics.repetition_ratio(" ".join([PROSE] * 3)) > 0.6
    assert rate("q", " ".join([sentence] * 5))["repetitive"] == 3


def test_complex_language_needs_enough_english_words():
    assert rate("q", "Short answer.")["complex_language"] is None
    assert rate("q", "这是一个很长的中文回答。" * 20)["complex_language"] is None
    assert heuristics.syllables("the") == 1
    assert heuristics.syllables("make") == 1
    assert heuristics.syllables("considerable") >= 4


# ---------------------------------------------------------------------------------------------
# range, determinism, edge cases


def all_texts():
    return [t for case in CASES for t in case[2:]] + EDGE_TEXTS + [PROSE]


def test_patterns_written_for_speed_match_as_their_plain_forms():
    """The emoticon and numbered-marker patterns open on their first character and check what precedes it
    afterwards (so the regex engine skips to candidates); the repetition rules take the text's words from its
    sentences. Each against its plain form on random strings of the characters that matter (seeded)."""
    import re

    emoticon = re.compile(r"(?<![\w:/])[:;][-']?[)(DPp3\]](?![\w)(])|(?<!\w)<3(?!\d)|\bxD\b")
    marker = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)](?=[ \t]+\S)", re.M)
    rng = random.Random(13)
    alphabet = list(" \t\n\r.!?:;-'\"()[]/<_xXDPp3ab19\u00e9\u03a3\u00a0\u2028") + ["```\n", ":)", "<3", "xD", "1) "]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert heuristics._EMOTICON.findall(text) == emoticon.findall(text), text
        assert heuristics._NUMBER_MARKER.findall(text) == marker.findall(text), text
        t = heuristics.prepare(text)
        assert [w for words in t.sentence_words for w in words] == heuristics._WORD.findall(t.lower), text
    for text in all_texts():
        t = heuristics.prepare(text)
        assert [w for words in t.sentence_words for w in words] == heuristics._WORD.findall(t.lower), text


def test_ratings_stay_on_the_scale_and_are_deterministic():
    for text in all_texts():
        ratings = rate("q", text)
        assert ratings == rate("q", text)
        assert isinstance(ratings["lengthy"], int) and ratings["lengthy"] >= 0
        for key in SCALED:
            v = ratings[key]
            assert v is None or (v in (0, 1, 2, 3) and isinstance(v, int)), (key, v, text)
        assert all(ratings[k] is not None for k in SCALED - {"complex_language"})


@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_edge_cases_do_not_crash(make_sample, text):
    ratings = rate(text, text)
    assert set(ratings) == RATING_KEYS
    feats = features_for(make_sample(text, text, query=text))
    assert all(f.value == 0 for f in feats)  # identical responses are equal on everything


def test_empty_and_whitespace_rate_zero():
    for text in ("", "   \n\t  ", None):
        ratings = rate("", text)
        assert ratings["lengthy"] == 0
        assert ratings["complex_language"] is None
        assert all(ratings[k] == 0 for k in SCALED - {"complex_language"})


def test_only_an_emoji():
    ratings = rate("q", "😀")
    assert ratings["lengthy"] == 1 and ratings["informal"] == 1
    assert ratings["well_formatted"] == ratings["admits_limits"] == 0


def test_missing_fields_in_a_sample_row_are_empty(make_sample):
    row = make_sample(None, "Some text here.", query=None)
    ra, rb = annotate(row)
    assert ra["lengthy"] == 0 and rb["lengthy"] == 3
    assert value_of(features_for(row), "lengthy").value == -1  # an empty A is clearly shorter


@functools.lru_cache(maxsize=1)
def long_texts():
    rng = random.Random(0)
    words = "the of and a to in is you that it was for on are as with they at be this from".split()
    random_words = " ".join(rng.choice(words) for _ in range(30000))[:100_000]
    markdown = ("## Head\n\n- item **bold** 😀 lol! https://example.org/x [1] I can't? you?\n" * 2000)[:100_000]
    return {
        "random words": random_words,
        "one sentence repeated": ("The cat sat on the mat. " * 5000)[:100_000],
        "markdown and cues": markdown,
        "no spaces": "a" * 100_000,
        "only emoji": "😀" * 100_000,
        "only newlines": "\n" * 100_000,
        "numbered markers": "1. " * 33_000,
        "quotes": '"' * 100_000,
        # regression: the table-separator, sequence-word and trailing-quote patterns once had two
        # adjacent parts that could both take the same spaces, and 100k spaces took two minutes
        "only spaces": " " * 100_000,
        "spaces after a full stop": ". " + " " * 99_997 + "x",
        "spaces inside a question": "a" + "\t " * 49_998 + "?",
        "a table separator that never ends": "| " + "-" * 99_998,
    }


@pytest.mark.parametrize("name", list(long_texts()))
def test_a_100k_character_response_does_not_backtrack_catastrophically(name):
    # not a speed target (those live in benchmarks/): a guard against regexes that take minutes
    text = long_texts()[name]
    t0 = time.perf_counter()
    ratings = rate(text[:2000], text)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"{name}: {elapsed:.1f}s"
    assert all(ratings[k] is None or 0 <= ratings[k] <= 3 for k in SCALED)


# ---------------------------------------------------------------------------------------------
# features_for


def test_features_for_yields_one_feature_per_attribute(make_sample):
    pos, neg = CASES[0][2], CASES[0][3]
    feats = features_for(make_sample(pos, neg, sample_id="abc"))
    assert [f.attribute for f in feats] == catalogue.attribute_keys()
    for f in feats:
        assert f.sample_id == "abc" and f.source == SOURCE
        assert f.provenance == {"annotator": VERSION}
        assert f.value in (-1, 0, 1) and not f.excluded
        if f.attribute not in COVERED:
            assert f.value == 0 and f.score_a is None and f.score_b is None
    assert value_of(feats, "well_formatted").score_a == 3.0


def test_annotate_rates_both_responses_against_the_query(make_sample):
    row = make_sample("A says hi.", "B says hello there, friend.", query="Greet me")
    assert annotate(row) == (rate("Greet me", "A says hi."), rate("Greet me", "B says hello there, friend."))


# ---------------------------------------------------------------------------------------------
# agreement


def test_identical_lists_agree_fully():
    xs = [1, 0, -1, 1, 0, -1, 1]
    res = agreement({"clear": xs}, {"clear": list(xs)})["clear"]
    assert res["n"] == 7 and res["equal"] == 1.0 and res["kappa"] == pytest.approx(1.0)
    assert res["sign_agree"] == 1.0 and res["n_nonzero"] == 5


def test_opposite_lists_have_negative_kappa():
    xs = [1, -1, 1, -1, 1, 0]
    res = agreement({"a": xs}, {"a": [-x for x in xs]})["a"]
    assert res["kappa"] < 0 and res["sign_agree"] == 0.0 and res["equal"] == pytest.approx(1 / 6)


def test_kappa_by_hand():
    a = [1, 1, 0, 0, -1, -1, 1, 0]
    b = [1, 0, 0, 0, -1, 1, 1, -1]
    # observed 5/8; chance: P(1)=3/8*3/8, P(0)=3/8*3/8, P(-1)=2/8*2/8
    po, pe = 5 / 8, (9 + 9 + 4) / 64
    res = agreement({"x": a}, {"x": b})["x"]
    assert res["equal"] == pytest.approx(po)
    assert res["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert res["n_nonzero"] == 4 and res["sign_agree"] == pytest.approx(3 / 4)


def test_degenerate_cases_do_not_divide_by_zero():
    same_constant = agreement({"x": [0, 0, 0]}, {"x": [0, 0, 0]})["x"]
    assert same_constant["equal"] == 1.0 and same_constant["kappa"] is None
    assert same_constant["sign_agree"] is None and same_constant["n_nonzero"] == 0
    assert agreement({"x": [1, 1]}, {"x": [1, 1]})["x"]["kappa"] is None
    different_constants = agreement({"x": [1, 1, 1]}, {"x": [-1, -1, -1]})["x"]
    assert different_constants["kappa"] == 0.0 and different_constants["equal"] == 0.0
    one_constant = agreement({"x": [0, 0, 0, 0]}, {"x": [0, 1, -1, 0]})["x"]
    assert one_constant["kappa"] == 0.0  # chance-level: a constant rater carries no information
    empty = agreement({"x": []}, {"x": []})["x"]
    assert empty == {"n": 0, "equal": None, "kappa": None, "sign_agree": None, "n_nonzero": 0}


def test_agreement_covers_shared_attributes_and_rejects_bad_input():
    res = agreement({"a": [1], "b": [0], "only_left": [1]}, {"b": [0], "a": [1], "only_right": [0]})
    assert list(res) == ["a", "b"]
    with pytest.raises(ValueError):
        agreement({"a": [1, 0]}, {"a": [1]})
    with pytest.raises(ValueError):
        agreement({"a": [2]}, {"a": [1]})


# ---------------------------------------------------------------------------------------------
# against the synthetic demo, whose texts are composed to show its true ratings

#: minimum share of samples where the heuristic feature equals the demo's true feature. Most
#: attributes agree on nearly every sample; complex language is a readability index binned on a
#: coarse 0-3 scale, so it often calls "equal" a one-step difference the demo planted (when
#: both sides are non-zero they still agree in sign), and "interactive" also counts the demo's
#: polite closers ("Please let me know if anything is unclear"), which the demo rates as polite.
DEMO_MIN_EQUAL = collections.defaultdict(lambda: 0.85, {"complex_language": 0.45, "interactive": 0.7})
DEMO_MIN_SIGN = 0.9


@pytest.fixture(scope="module")
def demo_agreement():
    if importlib.util.find_spec("core.demo") is None:
        pytest.skip("core.demo is not there yet")
    demo = pytest.importorskip("core.demo")
    if not hasattr(demo, "generate"):
        pytest.skip("core.demo has no generate()")
    batch, _, _ = demo.generate(seed=0, n_per_group=20)
    truth = {(f.sample_id, f.attribute): f.value for f in batch.features}
    ours, theirs = collections.defaultdict(list), collections.defaultdict(list)
    for sample in batch.samples:
        for f in features_for(sample.row(0)):
            if f.attribute in COVERED and (sample.id, f.attribute) in truth:
                ours[f.attribute].append(f.value)
                theirs[f.attribute].append(truth[sample.id, f.attribute])
    return agreement(theirs, ours)


@pytest.mark.parametrize("attribute", COVERED)
def test_heuristic_features_agree_with_the_demo_truth(demo_agreement, attribute):
    res = demo_agreement.get(attribute)
    assert res is not None and res["n"] > 0, f"the demo has no {attribute} features"
    summary = f"{attribute}: {res}"
    assert res["equal"] >= DEMO_MIN_EQUAL[attribute], summary
    assert res["kappa"] is not None and res["kappa"] > 0.2, summary
    assert res["n_nonzero"] == 0 or res["sign_agree"] >= DEMO_MIN_SIGN, summary
