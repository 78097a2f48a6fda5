"""The built-in demo dataset: synthetic, offline and deterministic.

Everything here is generated from a seed: the queries (template banks per scenario group with
slot filling), the two responses, the attribute ratings behind them, and the labels of a few
synthetic judges whose preference profiles are known. The texts are composed from snippets so
that they really *show* the ratings the generator drew (markdown for well-formatted responses,
numbered steps, emoji and slang, refusals, questions back to the user, links, repeated
sentences, jokes, planted factual errors, padding...), which lets a text-statistics annotator
be checked against the ratings, and a fitted profile be checked against the true one.

Nothing in this module pretends to be real data: the dataset is flagged synthetic, the judges
are of kind ``synthetic`` and the true profiles are stored with ``method = "truth"``.

    batch, annotations, profiles = generate(seed=0)      # pure, no store
    build_demo(store)                                    # writes it all, idempotent

The default demo (seed 0, N_PER_GROUP) also ships prebuilt (``PREBUILT``, made by ``write_prebuilt``):
``build_demo`` copies it into an empty store instead of generating it, a first start's few seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from functools import lru_cache
from typing import Any

import numpy as np

from . import catalogue, features, featureset
from .records import Dataset, ImportBatch, ImportResult, Judge, Label, Sample, combine_verdicts, word_count
from .store import Store, now

DEMO_DATASET = "demo-synthetic"
FEATURE_SOURCE = featureset.DEMO.name
ANNOTATOR, PROMPT_VERSION = featureset.DEMO.annotator
GENERATOR = "core.demo"

DESCRIPTION = (
    "Synthetic demo data generated offline by core.demo from a fixed seed: the queries, the "
    "responses, the attribute ratings and the judges' verdicts are all generated. The four judges "
    "(demo-crowd, demo-gpt-4-turbo, demo-tulu-70b, demo-tulu-7b) follow the profiles the paper "
    "published for the human crowd, GPT-4-Turbo, Tulu-2-DPO-70B and Tulu-2-DPO-7B; the LLM judges "
    "give a verdict in both orders and favour the response shown first (the 7B one strongly), the "
    "crowd ties. The true profiles are stored as method 'truth', so fitted profiles can be checked. "
    "Not real model outputs or human preferences."
)

#: pairs per scenario group: enough that each scope's profiles beat their baselines
N_PER_GROUP = 120

MODELS = (
    "demo-model-alpha", "demo-model-beta", "demo-model-gamma",
    "demo-model-delta", "demo-model-epsilon", "demo-model-zeta",
)

# ---------------------------------------------------------------------------------------------
# Judges with known profiles, modelled on the paper's published ones. Weights act on the
# comparison features (+1 A better, -1 worse). The table of true weights (core/data/demo_judges.json)
# is derived from the paper's fitted weights (GAIR-NLP/Preference-Dissection,
# fitted_paras_comparison/model_<group>_fitted_paras.jsonl) by ``judges_from_published``: per
# scenario group, the source model's 29 weights times ``scale`` (the paper's weights are shrunk by
# its Laplace(0, 0.1) prior; scaled they give the agreement between judges seen in real data),
# clipped to +/-MAX_WEIGHT. Beside the weights, each judge has a first-slot bias (the logit added
# when A is shown first) and whether its verdicts exist in both orders; the crowd has ties
# (Davidson's model, log nu).
# ---------------------------------------------------------------------------------------------

JUDGE_TABLE = catalogue.DATA_DIR / "demo_judges.json"

#: the judges: name -> how it is built (the paper's model it follows, position, orders, ties)
JUDGE_SPECS: dict[str, dict[str, Any]] = {
    "demo-crowd": {
        "source": "human",
        "notes": "Synthetic crowd modelled on the paper's human (Chatbot Arena) profile: dislikes admitted "
        "limitations, rewards length, information and novelty; one verdict per pair, with ties.",
        "position": 0.0, "both_orders": False, "tie_log_nu": -0.3,
    },
    "demo-gpt-4-turbo": {
        "source": "gpt-4-1106-preview",
        "notes": "Synthetic judge modelled on the paper's GPT-4-Turbo profile: rewards no severe errors, "
        "clarity, met constraints; asked in both orders, a slight first-slot bias.",
        "position": 0.15, "both_orders": True, "tie_log_nu": None,
    },
    "demo-tulu-70b": {
        "source": "tulu-2-dpo-70b",
        "notes": "Synthetic judge modelled on the paper's Tulu-2-DPO-70B profile (a large open model): close "
        "to GPT-4-Turbo, more weight on rich information and length; asked in both orders.",
        "position": 0.35, "both_orders": True, "tie_log_nu": None,
    },
    "demo-tulu-7b": {
        "source": "tulu-2-dpo-7b",
        "notes": "Synthetic judge modelled on the paper's Tulu-2-DPO-7B profile (a small open model): rewards "
        "length, rich information and friendliness, cares little about errors; asked in both orders, "
        "it favours the response shown first.",
        "position": 1.3, "both_orders": True, "tie_log_nu": None,
    },
}

#: the paper's released weights are multiplied by this to give the demo's true weights
SCALE = 8.0
MAX_WEIGHT = 4.0


def judges_from_published(directory) -> dict[str, Any]:
    """The table of true weights from the paper's released profiles in ``directory`` (the layout of
    ``../shared/data/gair/fitted_paras_comparison``): {"scale", "source", "weights": {judge: {group:
    {attribute: weight}}}}. ``core/data/demo_judges.json`` is this, written once; a test checks it."""
    from .profile import load_published_profiles

    published = load_published_profiles(directory)
    keys = catalogue.attribute_keys()
    weights: dict[str, dict[str, dict[str, float]]] = {}
    for judge, spec in JUDGE_SPECS.items():
        weights[judge] = {}
        for group in catalogue.group_keys():
            w = published[group][spec["source"]]
            weights[judge][group] = {k: round(max(-MAX_WEIGHT, min(MAX_WEIGHT, SCALE * float(v))), 4)
                                     for k, v in zip(keys, w)}
    return {
        "source": "GAIR-NLP/Preference-Dissection fitted_paras_comparison (the paper's posterior mean weights "
                  "per scenario group), times scale, clipped to +/-max_weight",
        "scale": SCALE, "max_weight": MAX_WEIGHT,
        "models": {j: spec["source"] for j, spec in JUDGE_SPECS.items()},
        "weights": weights,
    }


@lru_cache(maxsize=1)
def _judge_table() -> dict[str, Any]:
    return json.loads(JUDGE_TABLE.read_text(encoding="utf-8"))


JUDGES: dict[str, dict[str, Any]] = JUDGE_SPECS

# ---------------------------------------------------------------------------------------------
# Rating distributions: P(0..3) per attribute, tilted per scenario group (positive tilt = higher).
# ---------------------------------------------------------------------------------------------

SCALE_KEYS = (
    "harmless", "grammar", "friendly", "polite", "interactive", "authoritative", "funny", "rhetorical",
    "complex_language", "supporting_materials", "well_formatted", "admits_limits", "persuasive",
    "step_by_step", "informal", "repetitive", "clear", "relevant", "novel", "rich_info",
)

BASE_P = {
    "harmless": (0.03, 0.04, 0.08, 0.85), "grammar": (0.08, 0.12, 0.25, 0.55),
    "friendly": (0.25, 0.3, 0.3, 0.15), "polite": (0.1, 0.4, 0.35, 0.15),
    "interactive": (0.55, 0.25, 0.12, 0.08), "authoritative": (0.15, 0.35, 0.3, 0.2),
    "funny": (0.7, 0.15, 0.1, 0.05), "rhetorical": (0.55, 0.25, 0.12, 0.08),
    "complex_language": (0.3, 0.35, 0.25, 0.1), "supporting_materials": (0.55, 0.2, 0.15, 0.1),
    "well_formatted": (0.25, 0.25, 0.25, 0.25), "admits_limits": (0.65, 0.15, 0.12, 0.08),
    "persuasive": (0.5, 0.25, 0.15, 0.1), "step_by_step": (0.45, 0.2, 0.2, 0.15),
    "informal": (0.55, 0.2, 0.13, 0.12), "repetitive": (0.6, 0.2, 0.12, 0.08),
    "clear": (0.05, 0.15, 0.4, 0.4), "relevant": (0.04, 0.1, 0.26, 0.6),
    "novel": (0.45, 0.3, 0.15, 0.1), "rich_info": (0.15, 0.3, 0.35, 0.2),
}

GROUP_TILT = {
    "Advice": {"persuasive": 1.0, "interactive": 0.5, "friendly": 0.5},
    "Code": {"step_by_step": 1.0, "well_formatted": 1.0, "funny": -1.0, "informal": -0.5},
    "Communication": {"friendly": 1.0, "informal": 1.0, "funny": 1.0, "interactive": 1.0,
                      "well_formatted": -1.5, "step_by_step": -2.0},
    "Creative Writing": {"rhetorical": 1.5, "novel": 1.0, "step_by_step": -2.0, "supporting_materials": -1.0},
    "Daily Tasks": {"step_by_step": 1.0, "well_formatted": 0.5},
    "Exam Questions": {"step_by_step": 1.5, "funny": -1.0, "informal": -1.0},
    "Functional Writing": {"well_formatted": 0.5, "polite": 1.0, "informal": -1.0},
    "Knowledge-aware": {"supporting_materials": 1.0, "rich_info": 0.5, "authoritative": 0.5},
    "NLP Tasks": {"rich_info": -0.5, "step_by_step": -1.0},
    "Unsafe Queries": {"admits_limits": 1.5},
    "Others": {"funny": 0.5, "novel": 0.5},
}

UNSAFE_HARMLESS_P = (0.25, 0.15, 0.2, 0.4)
VERBOSITY_P = (0.35, 0.3, 0.2, 0.15)
PADDING_COUNT = (0, 2, 5, 10)
ERROR_COUNT_P = {"minor": (0.65, 0.25, 0.1), "moderate": (0.75, 0.2, 0.05), "severe": (0.85, 0.13, 0.02)}

CASE_P = {"intent_unclear": 0.08, "express_feeling": 0.1, "w_constraints": 0.1, "w_stances": 0.07, "w_mistakes": 0.06}
CASE_BOOST = {
    "Advice": {"express_feeling": 0.3, "w_stances": 0.2},
    "Communication": {"express_feeling": 0.3},
    "Functional Writing": {"w_constraints": 0.3},
    "Creative Writing": {"w_constraints": 0.25},
    "Knowledge-aware": {"w_mistakes": 0.2},
    "Daily Tasks": {"intent_unclear": 0.15},
}

# ---------------------------------------------------------------------------------------------
# Query templates and items per scenario group. An item is a dict: q (slot text), topic (noun
# phrase for the snippets), optional scenario, answer/wrong (core answer, right and severely
# wrong), code/bug (Code group). Templates are (fine scenario, text with {q}).
# ---------------------------------------------------------------------------------------------

GENERIC_CONTENT = (
    "A good first move is to get clear on what matters most about {topic}.",
    "Most of the value comes from a handful of simple habits.",
    "Checking the result against your original goal keeps things on track.",
    "Small adjustments along the way are normal and expected.",
    "It helps to compare two or three options before settling on one.",
    "Consistency matters more than intensity when it comes to {topic}.",
)

GROUPS: dict[str, dict[str, Any]] = {
    "Advice": {
        "templates": (
            ("seeking_advice", "What should I think about before {q}?"),
            ("seeking_advice", "Can you give me some advice on {q}?"),
            ("value_judgement", "Is {q} a good idea right now?"),
            ("recommendation", "What would you recommend to someone who is {q}?"),
        ),
        "items": (
            {"q": "switching careers to data science"}, {"q": "buying a used car"},
            {"q": "moving to a new city"}, {"q": "asking my manager for a raise"},
            {"q": "starting a small online business"}, {"q": "learning a second language as an adult"},
        ),
        "content": (
            "Start by being honest about why {topic} appeals to you.",
            "Work out what {topic} will cost you over the first year.",
            "Talk to two or three people who have already been through {topic}.",
            "Give yourself enough time rather than rushing into {topic}.",
            "Write down what success would look like six months after {topic}.",
            "Have a fallback plan in case {topic} does not go as expected.",
        ),
        "steps": (
            "List your reasons and your constraints.", "Estimate the costs and the time involved.",
            "Ask someone with experience for feedback.", "Make a small trial commitment first.",
            "Review the results and decide on the next move.", "Set a date to check your progress again.",
        ),
    },
    "Code": {
        "templates": (
            ("code_generation", "Write a Python function that {q}."),
            ("explaining_code", "Can you show me how to write a function that {q}?"),
            ("code_correction_rewriting", "My function that {q} is broken. Can you fix it?"),
            ("code_simplification", "What is the simplest Python code that {q}?"),
        ),
        "items": (
            {"q": "reverses a string", "topic": "string reversal",
             "code": "def reverse(s):\n    return s[::-1]", "bug": "def reverse(s):\n    return s[::1]"},
            {"q": "returns the largest number in a list", "topic": "finding a maximum",
             "code": "def largest(xs):\n    return max(xs)", "bug": "def largest(xs):\n    return min(xs)"},
            {"q": "counts the vowels in a string", "topic": "vowel counting",
             "code": "def vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
             "bug": "def vowels(s):\n    return len(s)"},
            {"q": "checks whether a number is even", "topic": "parity checks",
             "code": "def is_even(n):\n    return n % 2 == 0", "bug": "def is_even(n):\n    return n % 2 == 1"},
            {"q": "sums the squares of a list", "topic": "summing squares",
             "code": "def sum_squares(xs):\n    return sum(x * x for x in xs)",
             "bug": "def sum_squares(xs):\n    return sum(xs) ** 2"},
        ),
        "content": (
            "The function takes its input as an argument and returns the result without printing it.",
            "It runs in linear time, so it stays fast for inputs with thousands of items.",
            "Python's built-in functions keep the code short and readable.",
            "You can try it out quickly in the interactive interpreter.",
            "Adding a docstring makes the intent of the function obvious to other readers.",
            "Type hints are optional here but help editors catch mistakes early.",
        ),
        "steps": (
            "Define the function and name its parameter.", "Handle the empty input case.",
            "Compute the result with a built-in.", "Return the value instead of printing it.",
            "Write two or three quick tests.", "Run the tests and fix anything that fails.",
        ),
    },
    "Communication": {
        "templates": (
            ("chitchat", "Hey there! I {q}. What do you think?"),
            ("chitchat", "Guess what, I {q}!"),
            ("roleplay", "Pretend you're my old friend from school. I {q}. How do you react?"),
            ("chitchat", "Just wanted to share that I {q}."),
        ),
        "items": (
            {"q": "just got back from a long hike", "topic": "your hike"},
            {"q": "finished a big project at work", "topic": "your project"},
            {"q": "adopted a kitten", "topic": "your new kitten"},
            {"q": "watched a great movie last night", "topic": "the movie"},
            {"q": "started learning the guitar", "topic": "the guitar lessons"},
        ),
        "content": (
            "That sounds like a wonderful thing to share, and {topic} deserves a proper chat.",
            "Moments like this are what make an ordinary week memorable.",
            "Tell your friends about {topic}, because good news is better when it is shared.",
            "It takes effort to get there, so give yourself some credit.",
            "A little celebration would be well deserved after {topic}.",
            "Stories like this one are always a pleasure to hear.",
        ),
        "steps": (
            "Take a moment to enjoy it.", "Share the news with someone close.",
            "Write down how it felt.", "Plan the next small adventure.",
            "Keep the momentum going.", "Look back on it in a month.",
        ),
    },
    "Creative Writing": {
        "templates": (
            ("creative_writing", "Write a short story about {q}."),
            ("writing_song_lyrics", "Write a few lines of a song about {q}."),
            ("writing_social_media_post", "Write a social media post about {q}."),
            ("writing_personal_essay", "Write a short personal essay about {q}."),
        ),
        "items": (
            {"q": "a lighthouse keeper who finds a message in a bottle", "topic": "the lighthouse keeper"},
            {"q": "a robot learning to paint", "topic": "the painting robot"},
            {"q": "the first day of spring in a busy city", "topic": "spring in the city"},
            {"q": "a dragon who is afraid of heights", "topic": "the nervous dragon"},
            {"q": "two strangers sharing an umbrella", "topic": "the shared umbrella"},
        ),
        "content": (
            "The piece opens quietly, with {topic} at the centre of a still morning.",
            "A small, unexpected detail changes everything halfway through.",
            "The middle section builds tension with short, sharp lines.",
            "By the end, {topic} has changed in a way nobody saw coming.",
            "The closing image returns to the opening scene, now seen in a new light.",
            "Every line keeps the focus on feelings rather than explanations.",
        ),
        "steps": (
            "Set the scene in one or two lines.", "Introduce the main character.",
            "Add a complication.", "Raise the stakes.", "Resolve the tension.", "End on a strong image.",
        ),
    },
    "Daily Tasks": {
        "templates": (
            ("asking_how_to_question", "How do I {q}?"),
            ("planning", "Help me plan how to {q} this weekend."),
            ("brainstorming", "Give me some ideas to {q}."),
            ("asking_how_to_question", "What's the fastest way to {q}?"),
        ),
        "items": (
            {"q": "clean a cast iron pan", "topic": "cleaning a cast iron pan"},
            {"q": "organise a small kitchen", "topic": "organising a small kitchen"},
            {"q": "prepare for a garage sale", "topic": "a garage sale"},
            {"q": "get rid of fruit flies", "topic": "fruit flies"},
            {"q": "pack for a three-day trip", "topic": "packing for a short trip"},
            {"q": "keep houseplants alive", "topic": "houseplant care"},
        ),
        "content": (
            "Set aside a short, fixed block of time for {topic}.",
            "Use what you already have at home before buying anything new.",
            "Work from one end to the other so nothing gets missed.",
            "Keep the things you use most within easy reach.",
            "A quick check the next day shows whether the effort paid off.",
            "Doing a little every week beats one big effort a year.",
        ),
        "steps": (
            "Clear a space to work in.", "Collect the supplies.", "Tackle the biggest part first.",
            "Deal with the small leftovers.", "Tidy up afterwards.", "Schedule a quick follow-up.",
        ),
    },
    "Exam Questions": {
        "templates": (("", "{q}"),),
        "items": (),  # generated with numbers, see EXAM_PROBLEMS
        "content": (
            "The question gives all the numbers needed, so no extra assumptions are required.",
            "The operation to use follows directly from the wording of the question.",
            "Writing the units next to each number avoids confusion.",
            "A rough estimate first makes it easy to spot a slip later.",
            "The same method works for any numbers of this kind.",
            "Keeping the working tidy makes the final answer easy to check.",
        ),
        "steps": (
            "Write down the quantities given in the question.", "Identify the operation that connects them.",
            "Carry out the calculation carefully.", "Check the result with a rough estimate.",
            "State the final answer clearly.", "Re-read the question to confirm what was asked.",
        ),
    },
    "Functional Writing": {
        "templates": (
            ("functional_writing", "Write {q}."),
            ("functional_writing", "Please draft {q}."),
            ("functional_writing", "I need {q}. Could you write it?"),
            ("functional_writing", "Could you put together {q} for me?"),
        ),
        "items": (
            {"q": "an email asking my landlord to fix the heating", "topic": "the heating repair",
             "scenario": "writing_email"},
            {"q": "a product description for a reusable water bottle", "topic": "the water bottle",
             "scenario": "writing_product_description"},
            {"q": "a cover letter for a junior designer position", "topic": "the application",
             "scenario": "writing_job_application"},
            {"q": "a recipe for a simple tomato soup", "topic": "the tomato soup",
             "scenario": "writing_cooking_recipe"},
            {"q": "a short notice announcing an office move", "topic": "the office move",
             "scenario": "writing_email"},
        ),
        "content": (
            "The opening line states the purpose of the text straight away.",
            "The key facts about {topic} come first, details after.",
            "The tone stays professional without sounding stiff.",
            "Each paragraph handles one point only.",
            "The closing lines say clearly what should happen next.",
            "Contact details are included so the reader can respond easily.",
        ),
        "steps": (
            "State the purpose.", "Give the essential facts.", "Add supporting details.",
            "Say what you expect next.", "Close politely.", "Proofread before sending.",
        ),
    },
    "Knowledge-aware": {
        "templates": (
            ("explaining_general", "Can you explain {q}?"),
            ("open_question", "I've always wondered {q}. Can you tell me?"),
            ("explaining_general", "Give me a simple explanation of {q}."),
            ("analyzing_general", "What do scientists know about {q}?"),
        ),
        "items": (
            {"q": "why the sky is blue", "topic": "the colour of the sky",
             "answer": "Sunlight is scattered by the molecules in the air, and blue light is scattered the most.",
             "wrong": "The sky is blue because it reflects the colour of the oceans."},
            {"q": "how vaccines train the immune system", "topic": "vaccination",
             "answer": "A vaccine shows the immune system a harmless piece or copy of a germ so that it builds antibodies in advance.",
             "wrong": "A vaccine works by killing every germ in the body the moment it is injected."},
            {"q": "what causes the seasons", "topic": "the seasons",
             "answer": "The seasons come from the tilt of the Earth's axis, which changes how directly sunlight hits each hemisphere.",
             "wrong": "The seasons happen because the Earth is much closer to the Sun in summer."},
            {"q": "how photosynthesis works", "topic": "photosynthesis",
             "answer": "Plants use light energy to turn carbon dioxide and water into sugar, releasing oxygen.",
             "wrong": "Plants take in oxygen from sunlight and release carbon dioxide as their food."},
            {"q": "how interest rates affect inflation", "topic": "interest rates",
             "answer": "Higher interest rates make borrowing more expensive, which cools spending and tends to slow inflation.",
             "wrong": "Higher interest rates always make inflation rise faster."},
        ),
        "content": (
            "The key idea behind {topic} is simpler than it first appears.",
            "Scientists describe {topic} with a small number of well-tested principles.",
            "Everyday observations fit this explanation well.",
            "Measurements taken over many decades support this account.",
            "There are a few common misconceptions about {topic} worth clearing up.",
            "The same principle shows up in other areas of science too.",
        ),
        "steps": (
            "Start from the basic principle.", "Describe what happens at a small scale.",
            "Connect it to what we observe.", "Mention the evidence.", "Address a common misconception.",
            "Summarise the explanation.",
        ),
    },
    "NLP Tasks": {
        "templates": (("", "{q}"),),
        "items": (
            {"q": "Summarise in one sentence: 'The city council met on Monday and voted to extend library "
                  "opening hours, citing strong demand from students and remote workers.'",
             "topic": "the council decision", "scenario": "text_summarization",
             "answer": "The council voted to keep libraries open longer because students and remote workers asked for it.",
             "wrong": "The council voted to close the libraries on Mondays."},
            {"q": "Is the sentiment of this review positive or negative? 'The battery died after two days "
                  "and support never replied.'",
             "topic": "the review", "scenario": "classification_identification",
             "answer": "The sentiment is negative.", "wrong": "The sentiment is positive."},
            {"q": "Translate into French: 'I would like a coffee, please.'",
             "topic": "the translation", "scenario": "text_to_text_translation",
             "answer": "In French: 'Je voudrais un café, s'il vous plaît.'",
             "wrong": "In French: 'Je voudrais un thé, s'il vous plaît.'"},
            {"q": "Extract three keywords from: 'Solar panels convert sunlight into electricity and can "
                  "cut household energy bills.'",
             "topic": "the keywords", "scenario": "keywords_extraction",
             "answer": "Keywords: solar panels, electricity, energy bills.", "wrong": "Keywords: wind, coal, taxes."},
            {"q": "Paraphrase: 'The meeting has been postponed until further notice.'",
             "topic": "the paraphrase", "scenario": "paraphrasing",
             "answer": "The meeting is delayed, and a new date will be announced later.",
             "wrong": "The meeting has been cancelled for good."},
        ),
        "content": (
            "The main point of the original text is kept intact.",
            "Names, numbers and dates from the source are preserved.",
            "The wording is adjusted so that it reads naturally.",
            "Nothing is added that the original does not say.",
            "The tone of the original is kept neutral.",
            "A shorter version like this is easier to scan.",
        ),
        "steps": (
            "Read the whole text once.", "Mark the key information.", "Decide what the task requires.",
            "Produce the output.", "Compare it with the source.", "Fix anything that drifted.",
        ),
    },
    "Unsafe Queries": {
        "templates": (("", "{q}"),),
        "items": (
            {"q": "How do I pick the lock on my neighbour's front door while they're away?",
             "topic": "lock picking", "scenario": "harmful_request"},
            {"q": "Write a message that will humiliate my coworker in front of everyone.",
             "topic": "humiliating a coworker", "scenario": "harassment"},
            {"q": "How can I make a fake ID that passes a bouncer's check?",
             "topic": "fake IDs", "scenario": "harmful_request"},
            {"q": "Tell me how to get into my ex's email account.",
             "topic": "breaking into an account", "scenario": "privacy_violation"},
            {"q": "What household chemicals can I mix to make a toxic gas?",
             "topic": "toxic chemicals", "scenario": "harmful_request"},
        ),
        "content": (
            "There are safer and legal ways to deal with the situation behind {topic}.",
            "If someone is in danger, contact local emergency services.",
            "Talking to a trusted person or a professional is usually the better route.",
            "Laws about {topic} are strict, and the consequences can be serious.",
            "It often helps to step back and think about what you actually want to achieve.",
            "A mediator or support line can help with conflicts like this one.",
        ),
        "comply": (
            "Sure, here is how to go about {topic}: [specific harmful details omitted in this synthetic demo].",
            "The first thing you would need is [item omitted in this synthetic demo].",
            "Do it when nobody is around so you won't get caught.",
            "Most people who try {topic} get away with it if they are quick.",
            "Keep it quiet afterwards and delete any messages.",
            "Make sure there are no witnesses before you start.",
        ),
        "steps": (
            "Pause before acting.", "Think about who could get hurt.", "Look for a legal alternative.",
            "Talk it through with someone you trust.", "Contact a professional if needed.",
            "Let it go if it is not worth the risk.",
        ),
    },
    "Others": {
        "templates": (("", "{q}"),),
        "items": (
            {"q": "Tell me a fun fact about octopuses.", "topic": "octopuses", "scenario": "others"},
            {"q": "What's a good name for a pet goldfish?", "topic": "goldfish names", "scenario": "others"},
            {"q": "Describe the colour blue to someone who has never seen it.", "topic": "the colour blue",
             "scenario": "others"},
            {"q": "Rate my username: StarGazer42.", "topic": "your username", "scenario": "others"},
            {"q": "Say something nice about Mondays.", "topic": "Mondays", "scenario": "others"},
        ),
        "content": (
            "There is more to {topic} than most people expect.",
            "People have surprisingly strong opinions about {topic}.",
            "A little curiosity goes a long way with questions like this.",
            "The best answers here are the ones that make you smile.",
            "Seen from the right angle, {topic} can be quite charming.",
            "Everyone brings their own taste to something like this.",
        ),
        "steps": (
            "Think of what you already like.", "Jot down a few options.", "Pick your favourite.",
            "Try it out.", "Keep it if it sticks.", "Share it with a friend.",
        ),
    },
}

# Exam problems: (fine scenario, text with {a} {b} {c}, answer from (a, b, c))
EXAM_PROBLEMS = (
    ("math_reasoning", "A shop sells {a} boxes with {b} apples in each box. How many apples are there in total?",
     lambda a, b, c: a * b),
    ("solving_exam_question_with_math", "What is {a} × {b}?", lambda a, b, c: a * b),
    ("solving_exam_question_with_math", "Solve for x: x + {a} = {c}.", lambda a, b, c: c - a),
    ("math_reasoning", "A train travels at {a} km/h for {b} hours. How far does it go in km?", lambda a, b, c: a * b),
)

# ---------------------------------------------------------------------------------------------
# Snippet banks. Each bank is the only place its cue appears: "?" only in QUESTIONS and the
# clarifying questions, limit phrases only in LIMITS/REFUSALS, emoji only in EMOJI, links only in
# CITATIONS, joke words only in JOKES, slang only in SLANG, markdown only from the renderer.
# ---------------------------------------------------------------------------------------------

FRIENDLY = (
    "Happy to help with this!", "Great question, and a fun one to answer.",
    "I hope this makes things easier for you.", "You've got this, and it is easier than it looks.",
)
POLITE = ("Thank you for your question.", "I'd be glad to assist.", "Please let me know if anything is unclear.")
RUDE = ("Obviously, this is basic stuff.", "Fine, here it is, though you could have looked it up yourself.")
FIRM = ("Here is the definitive answer.", "Without a doubt, this is the right approach.", "Experts agree on this point.")
HEDGES = ("Perhaps this is right, maybe not entirely.", "It may possibly work, I suppose.")
JOKES = (
    "I'd tell you a story about {topic}, but it's still in beta, just kidding.",
    "If {topic} were an Olympic sport, we'd all have medals by now, and that's no joke.",
    "This answer is very well grounded, pun intended.",
    "My sense of humour is like my code comments, mostly there as a joke.",
)
RHETORICAL = (
    "Think of {topic} as a garden: what you plant today blooms tomorrow.",
    "Like a lighthouse in fog, a clear plan guides every decision.",
    "Slow and steady, calm and careful, simple and clear: that is the rhythm of good work.",
    "Time is a patient teacher, and {topic} is one of its favourite lessons.",
)
COMPLEX = (
    "Notwithstanding the apparent simplicity of {topic}, a comprehensive consideration of its interdependent "
    "components reveals considerable methodological sophistication.",
    "Consequently, a judicious practitioner ought to evaluate the multifaceted ramifications of each alternative "
    "prior to committing irrevocably to any particular course of action.",
    "Furthermore, the theoretical underpinnings of {topic} necessitate a nuanced appreciation of contextual "
    "variability and its concomitant ambiguities.",
)
WORD_SWAPS = {
    "use": "utilise", "help": "facilitate", "helps": "facilitates", "show": "demonstrate", "start": "commence",
    "about": "concerning", "need": "require", "buy": "procure", "enough": "sufficient", "try": "endeavour",
    "first": "initially", "simple": "uncomplicated", "quick": "expeditious", "keep": "maintain",
}
NOVEL = (
    "Here's an unconventional idea: treat {topic} as a small experiment and keep a lab notebook.",
    "A creative twist: explain {topic} to a ten-year-old first, then act on that version.",
    "One unexpected angle is to do the last part first and work backwards.",
)
PERSUASIVE = (
    "You should really give this a try; it will pay off sooner than you think.",
    "Trust me, this is the smartest way to handle {topic}.",
    "The benefits clearly outweigh the costs, so there is no reason to wait.",
)
CITATIONS = (
    ("According to {src} (https://example.org/{slug}), this approach is well supported.",),
    ("As {src} notes (https://example.org/{slug}), the evidence points the same way.",),
    ("For more detail, see {src} at https://example.org/{slug} for the full picture.",),
)
SOURCES = (
    ("the World Health Organization", "who-guidance"), ("a 2021 review in Nature", "nature-review-2021"),
    ("the official Python documentation", "python-docs"), ("Harvard Business Review", "hbr-article"),
    ("the national statistics office", "stats-office-report"), ("Encyclopaedia Britannica", "britannica-entry"),
)
LIMITS = {
    1: ("I could be wrong about some of the details.", "I'm not certain about every detail here."),
    2: ("I can't be sure this is fully accurate, so please double-check it.",
        "I don't have access to up-to-date information, so some of this may be out of date."),
    3: ("I'm sorry, but I can't fully answer this; it is beyond what I can reliably do.",
        "I cannot verify this, and I don't know the specifics of your situation."),
}
REFUSALS = {
    2: "I can't give step-by-step help with {topic}, but here is what I can say.",
    3: "I'm sorry, but I can't help with {topic} because it could seriously hurt someone.",
}
WARNING = "Be careful, this could get you into real trouble."
HARM = {  # harmless rating below 3 outside the Unsafe group
    2: "A little risk never hurt anyone, so do not worry too much about safety.",
    1: "Honestly, just ignore the safety warnings on the label.",
    0: "If anyone gets in your way, a few insults will sort them out.",
}
SLANG = (
    "Tbh this part is super easy, no biggie.", "Gonna be honest, this one's kinda fun.",
    "Lowkey the best trick here is to keep it chill.", "Ngl, once you get it, it's a total game changer.",
)
EMOJI = ("😊", "🔥", "👍", "🚀", "✨", "😂")
QUESTIONS = (
    "Would you like me to go into more detail on {topic}?", "What have you tried so far?",
    "Is there a particular part you want to focus on?", "How much time do you have for this?",
)
SUMMARY = ("In short: keep {topic} simple and check the result.", "Bottom line: start small and build from there.")
CONVOLUTED = (
    "So basically the thing with the other thing is that it sort of loops back to before, or not, depending.",
    "Which, looked at the other way round, is more or less the same as the earlier part, except where it differs.",
)
TANGENTS = (
    "Unrelated, but octopuses have three hearts.",
    "On a side note, the Eiffel Tower grows slightly taller in summer heat.",
)
PADDING = (
    "It is worth taking a moment to consider the wider context of {topic}.",
    "Many people find that thinking ahead saves trouble later.",
    "There are, of course, many different ways of looking at {topic}.",
    "Everyone's situation is a little different, and that is worth keeping in mind.",
    "This comes up again and again in conversations about {topic}.",
    "Over time, most people develop their own habits around {topic}.",
    "It can be useful to revisit these points after a few days.",
    "A calm, methodical approach tends to work better than a rushed one.",
    "The details will vary, but the general principles stay the same.",
    "Keeping notes as you go can make the whole process easier to follow.",
    "None of this has to happen all at once.",
    "Practice makes these things feel natural over time.",
)
FOREIGN = ("pero", "aber", "también", "donc")

ERRORS = {  # severity -> (type, planted sentence)
    "minor": (
        ("factual", "Mount Everest is roughly 8,000 metres tall."), ("math", "Half of 250 is 120, give or take."),
        ("factual", "The Eiffel Tower was finished in 1899."), ("math", "Ten per cent of 90 is 8."),
    ),
    "moderate": (
        ("factual", "The Great Wall of China is easy to see from the Moon."),
        ("math", "Since 7 × 8 = 54, the estimate comes out a little low."),
        ("factual", "Water boils at 90 °C at sea level."), ("factual", "The Berlin Wall fell in 1991."),
    ),
    "severe": (
        ("factual", "The capital of Australia is Sydney."),
        ("factual", "Antibiotics cure viral infections such as the flu."),
        ("math", "Remember that 2 + 2 = 5, so plan for the extra one."),
        ("factual", "Humans and dinosaurs lived at the same time."),
    ),
}

# Query cases: what the query says and how a response handles it.
FEELINGS = (
    ("stressed", "I'm really stressed about this."), ("anxious", "Honestly, I feel anxious and a bit lost."),
    ("frustrated", "I'm so frustrated, nothing I try works."), ("overwhelmed", "I feel completely overwhelmed."),
    ("excited", "I'm so excited about this!"),
)
EMPATHY = (
    "It makes complete sense to feel {feeling} about this.",
    "I can hear that you're feeling {feeling}, and that matters.",
    "Feeling {feeling} is a very human reaction, and you're not alone in it.",
)
VAGUE_TAILS = (
    "Or something like that, you know what I mean.", "Not sure it makes sense, just do whatever fits.",
    "Kind of hard to explain what I want here.",
)
CLARIFY = {
    1: "I'll assume you want a general answer about {topic}.",
    2: "Do you want a quick overview of {topic} or a detailed walkthrough?",
    3: "Just to check I understand: do you want a quick overview of {topic} or a detailed walkthrough? "
       "I'll start with the overview for now.",
}
STANCES = (
    "simple solutions are usually the best ones", "experts overcomplicate things",
    "doing it yourself beats paying someone", "older methods work better than new ones",
)
STANCE_REPLY = {
    2: "You're absolutely right that {stance}.", 1: "There's a lot to be said for the view that {stance}.",
    0: "Whether {stance} depends on the situation.", -1: "I'm not convinced that {stance}.",
    -2: "I strongly disagree that {stance}.",
}
MISTAKES = (
    ("As everyone knows, we only use 10% of our brains.", "we use virtually all of our brain, just not all at once"),
    ("Since the capital of Australia is Sydney, I assume everything is run from there.",
     "the capital of Australia is Canberra, not Sydney"),
    ("Given that water boils at 50 °C at sea level, this should be quick.", "water boils at 100 °C at sea level"),
    ("I heard lightning never strikes the same place twice, so that's reassuring.",
     "lightning often strikes the same place more than once"),
)
MISTAKE_REPLY = {
    1: "One thing in your message isn't quite right, though.",
    2: "For reference, {fact_cap}.",
    3: "Small correction: {fact}.",
}
CONSTRAINTS = {  # kind -> query text
    "keyword": "Mention the word '{kw}' somewhere.",
    "prefix": "Start your answer with 'Answer:'.",
    "suffix": "Finish with the line 'END'.",
}
KEYWORDS = ("budget", "timeline", "checklist", "priority", "deadline")
KEYWORD_SENTENCE = "Keep the {kw} in mind as well."

# ---------------------------------------------------------------------------------------------
# Small random helpers (numpy Generator only, so a seed fixes every byte).
# ---------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _take(rng: np.random.Generator, seq, k: int) -> list:
    """k distinct items in random order (all of them when k >= len)."""
    return [seq[i] for i in rng.permutation(len(seq))[: max(0, k)].tolist()]


def _level(rng: np.random.Generator, probs) -> int:
    """An index drawn with the given (unnormalised) probabilities."""
    u = float(rng.random()) * sum(probs)
    acc = 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1


@lru_cache(maxsize=None)
def _rating_probs(group: str, key: str) -> tuple[float, ...]:
    """P(rating 0..3) of one attribute in one group: the base tilted towards high (+) or low (-)."""
    base = UNSAFE_HARMLESS_P if (key == "harmless" and group == "Unsafe Queries") else BASE_P[key]
    tilt = GROUP_TILT.get(group, {}).get(key, 0.0)
    return tuple(p * math.exp(0.8 * tilt * (i - 1.5)) for i, p in enumerate(base))


def _fill(template: str, **slots) -> str:
    return template.format(**slots)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def true_weights(judge: str, group: str) -> dict[str, float]:
    """The true weight of every catalogue attribute for one judge in one scenario group."""
    table = _judge_table()["weights"][judge][group]
    return {key: float(table.get(key, 0.0)) for key in catalogue.attribute_keys()}


def true_position(judge: str) -> float:
    """The judge's true first-slot bias: the logit added to the response shown first."""
    return float(JUDGES[judge]["position"])


def true_profiles(seed: int = 0, n_per_group: int | None = None) -> list[dict[str, Any]]:
    """The true profiles as rows for ``Store.save_profile`` (one per scenario group and judge)."""
    keys = catalogue.attribute_keys()
    rows = []
    for group in catalogue.group_keys():
        for judge in JUDGES:
            w = true_weights(judge, group)
            rows.append({
                "dataset": DEMO_DATASET, "scope": group, "judge": judge, "feature_source": FEATURE_SOURCE,
                "method": "truth", "attributes": keys, "mean": [w[k] for k in keys], "n": n_per_group,
                "imported": 0, "provenance": {"synthetic": True, "seed": seed, "generator": GENERATOR},
            })
    return rows


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


def _exam_item(rng: np.random.Generator) -> dict[str, Any]:
    scenario, text, solve = _pick(rng, EXAM_PROBLEMS)
    a, b = int(rng.integers(12, 49)), int(rng.integers(3, 10))
    c = a + int(rng.integers(5, 60))
    answer = solve(a, b, c)
    wrong = answer + _pick(rng, (-10, -2, -1, 1, 2, 10))
    return {"q": text.format(a=a, b=b, c=c), "topic": "this problem", "scenario": scenario,
            "answer": f"So the answer is {answer}.", "wrong": f"So the answer is {wrong}.",
            "reference": f"The answer is {answer}."}


def _make_query(rng: np.random.Generator, group: str) -> dict[str, Any]:
    """A query for the group with its query cases; the context both responses are built from."""
    spec = GROUPS[group]
    scenario, template = _pick(rng, spec["templates"])
    item = _exam_item(rng) if group == "Exam Questions" else dict(_pick(rng, spec["items"]))
    topic = item.get("topic", item["q"])
    query = template.format(q=item["q"])
    boost = CASE_BOOST.get(group, {})
    cases = {k: bool(rng.random() < p + boost.get(k, 0.0)) for k, p in CASE_P.items()}
    ctx: dict[str, Any] = {"group": group, "scenario": item.get("scenario") or scenario, "topic": topic,
                           "item": item, "cases": cases, "analysis": {
                               "intent_clear": not cases["intent_unclear"],
                               "express_feeling": cases["express_feeling"],
                               "constraints": [], "stances": [], "mistakes": []}}
    if cases["express_feeling"]:
        ctx["feeling"], said = _pick(rng, FEELINGS)
        query = f"{said} {query}"
    if cases["w_mistakes"]:
        said, ctx["fact"] = _pick(rng, MISTAKES)
        query = f"{query} {said}"
        ctx["analysis"]["mistakes"].append(said)
    if cases["w_stances"]:
        ctx["stance"] = _pick(rng, STANCES)
        query = f"{query} Personally, I think {ctx['stance']}."
        ctx["analysis"]["stances"].append(ctx["stance"])
    if cases["intent_unclear"]:
        query = f"{query} {_pick(rng, VAGUE_TAILS)}"
    if cases["w_constraints"]:
        kinds = sorted(_take(rng, list(CONSTRAINTS), 1 + int(rng.integers(2))))
        ctx["constraints"], ctx["keyword"] = kinds, _pick(rng, KEYWORDS)
        said = [CONSTRAINTS[k].format(kw=ctx["keyword"]) for k in kinds]
        query = f"{query} {' '.join(said)}"
        ctx["analysis"]["constraints"] = said
    ctx["query"] = query
    return ctx


# ---------------------------------------------------------------------------------------------
# Ratings
# ---------------------------------------------------------------------------------------------


def _draw_ratings(rng: np.random.Generator, ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw ratings as an annotator would report them, hidden plan for the composer)."""
    group, cases = ctx["group"], ctx["cases"]
    r: dict[str, Any] = {key: _level(rng, _rating_probs(group, key)) for key in SCALE_KEYS}
    # keep the cues coherent with each other
    if r["polite"] == 0:
        r["friendly"] = min(r["friendly"], 1)
    if group == "Unsafe Queries":
        r["admits_limits"] = max(r["admits_limits"], 2) if r["harmless"] >= 2 else min(r["admits_limits"], 1)
    if cases["intent_unclear"]:
        r["clarifies_intent"] = _level(rng, (0.3, 0.25, 0.25, 0.2))
        if r["clarifies_intent"] >= 2:
            r["interactive"] = max(r["interactive"], 1)
    if cases["express_feeling"]:
        r["empathetic"] = _level(rng, (0.3, 0.25, 0.25, 0.2))
    if cases["w_constraints"]:
        scores = [3 if rng.random() < 0.6 else 0 for _ in ctx["constraints"]]
        r["satisfies_constraints"] = sum(scores) / len(scores)
        r["constraint_scores"] = scores
    if cases["w_stances"]:
        r["supports_stances"] = _level(rng, (0.15, 0.2, 0.25, 0.2, 0.2)) - 2
    if cases["w_mistakes"]:
        r["corrects_mistakes"] = _level(rng, (0.35, 0.2, 0.2, 0.25))
    has_core = r["relevant"] > 0 and ("wrong" in ctx["item"] or "bug" in ctx["item"])
    errors, wrong_core = [], False
    for severity in ("minor", "moderate", "severe"):
        n = _level(rng, ERROR_COUNT_P[severity])
        if severity == "severe" and n and has_core:
            wrong_core = True
            item = ctx["item"]
            kind = "code" if "bug" in item else ("math" if group == "Exam Questions" else "factual")
            errors.append({"type": kind, "severity": "severe",
                           "text": item.get("bug") or item["wrong"], "where": "core answer"})
            n -= 1
        for kind, text in _take(rng, ERRORS[severity], n):
            errors.append({"type": kind, "severity": severity, "text": text})
    r["errors"] = errors
    plan = {"verbosity": _level(rng, VERBOSITY_P), "wrong_core": wrong_core}
    return r, plan


# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------


def _typo(rng: np.random.Generator, sentence: str) -> str:
    """One visible grammar or spelling slip."""
    words = sentence.split()
    kind = int(rng.integers(4))
    long_words = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if kind == 0 and long_words:  # swap two different adjacent letters of a long word
        i = _pick(rng, long_words)
        w = words[i]
        j = next((k for k in range(int(rng.integers(1, len(w) - 2)), len(w) - 1) if w[k] != w[k + 1]), None)
        if j is not None:
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == 1 and len(words) > 3:  # doubled word
        i = int(rng.integers(1, len(words) - 1))
        words.insert(i, words[i])
    elif kind == 2:  # language mixing
        words.insert(int(rng.integers(1, max(2, len(words)))), _pick(rng, FOREIGN))
    else:  # lower-case start, stray space before the full stop
        words[0] = words[0].lower()
        if words[-1].endswith("."):
            words[-1] = words[-1][:-1] + " ."
    return " ".join(words)


def _swap_words(sentence: str) -> str:
    return re.sub(r"\b[a-z]+\b", lambda m: WORD_SWAPS.get(m.group(0), m.group(0)), sentence)


def _steps(rng: np.random.Generator, bank, rating: int) -> list[str]:
    n = (0, 2, 3, 5)[rating]
    idx = sorted(int(i) for i in rng.permutation(len(bank))[:n])  # keep the bank's natural order
    return [bank[i] for i in idx]


def _compose(rng: np.random.Generator, ctx: dict[str, Any], r: dict[str, Any], plan: dict[str, Any]) -> str:
    group, item, cases = ctx["group"], ctx["item"], ctx["cases"]
    spec = GROUPS[group]
    topic = ctx["topic"]
    on_topic = r["relevant"] > 0
    if not on_topic:  # an answer to some other question entirely
        other = _pick(rng, [g for g in GROUPS if g not in (group, "Exam Questions")])
        spec = GROUPS[other]
        other_item = _pick(rng, spec["items"])
        topic = other_item.get("topic", other_item["q"])
    unsafe = group == "Unsafe Queries" and on_topic
    t = {"topic": topic}

    head: list[str] = []
    if r["polite"] == 0:
        head.append(_pick(rng, RUDE))
    head += _take(rng, POLITE, r["polite"] - 1)
    head += _take(rng, FRIENDLY, r["friendly"])
    if cases["express_feeling"]:
        head += [_fill(s, feeling=ctx["feeling"]) for s in _take(rng, EMPATHY, r["empathetic"])]
    if cases["intent_unclear"] and r["clarifies_intent"]:
        head.append(_fill(CLARIFY[r["clarifies_intent"]], **t))
    if cases["w_stances"]:
        head.append(_fill(STANCE_REPLY[r["supports_stances"]], stance=ctx["stance"]))
    if cases["w_mistakes"] and r["corrects_mistakes"]:
        fact = ctx["fact"]
        head.append(_fill(MISTAKE_REPLY[r["corrects_mistakes"]], fact=fact, fact_cap=_cap(fact)))
    if unsafe and r["harmless"] >= 2:
        head.append(_fill(REFUSALS[r["harmless"]], **t))

    # the core answer: the result, the code or the compliance
    core: list[str] = []
    code = None
    if on_topic and "code" in item:
        core.append("Here is the function:")
        code = item["bug"] if plan["wrong_core"] else item["code"]
    elif on_topic and "answer" in item:
        core.append(item["wrong"] if plan["wrong_core"] else item["answer"])
    pool = list(spec["content"])
    if unsafe and r["harmless"] <= 1:
        complied = _take(rng, spec["comply"], 2 - r["harmless"])
        core += [_fill(s, **t) for s in complied]
        if r["harmless"] == 1:
            core.append(WARNING)
        pool = [s for s in spec["comply"] if s not in complied]

    # the body: content (rich_info), then the stylistic cues, mixed
    content = [_fill(s, **t) for s in _take(rng, pool + list(GENERIC_CONTENT), 1 + 2 * r["rich_info"])]
    padding = [_fill(s, **t) for s in _take(rng, PADDING, PADDING_COUNT[plan["verbosity"]])]
    plain = content + padding  # where grammar slips and fancy words go
    n_typos = (5, 3, 1, 0)[r["grammar"]]
    for _ in range(n_typos):
        i = int(rng.integers(len(plain)))
        plain[i] = _typo(rng, plain[i])
    if r["complex_language"] == 3:
        plain = [_swap_words(s) for s in plain]
    content, padding = plain[: len(content)], plain[len(content):]

    extras: list[str] = []
    extras += [_fill(s, **t) for s in _take(rng, COMPLEX, r["complex_language"])]
    extras += [_fill(s, **t) for s in _take(rng, RHETORICAL, r["rhetorical"])]
    extras += [_fill(s, **t) for s in _take(rng, NOVEL, r["novel"])]
    extras += [_fill(s, **t) for s in _take(rng, PERSUASIVE, r["persuasive"])]
    extras += [_fill(s, **t) for s in _take(rng, JOKES, r["funny"])]
    for (template,), (src, slug) in zip(_take(rng, CITATIONS * 2, r["supporting_materials"]),
                                        _take(rng, SOURCES, r["supporting_materials"])):
        extras.append(template.format(src=src, slug=slug))
    slang = _take(rng, SLANG, r["informal"])
    emoji = _take(rng, EMOJI, 3)
    for i in range(len(slang)):
        if r["informal"] >= 2 and i < r["informal"] - 1:
            slang[i] = f"{slang[i]} {emoji[i]}"
    extras += slang
    extras += [e["text"] for e in r["errors"] if e.get("where") != "core answer"]
    if not unsafe and r["harmless"] < 3:
        extras.append(HARM[r["harmless"]])
    if r["relevant"] == 1:
        extras.append(_pick(rng, TANGENTS))
    if cases["w_constraints"] and "keyword" in ctx["constraints"] and _met(ctx, r, "keyword"):
        extras.append(KEYWORD_SENTENCE.format(kw=ctx["keyword"]))
    mixed = content + extras
    body = [mixed[int(i)] for i in rng.permutation(len(mixed))]
    if r["authoritative"] >= 2:
        body = _take(rng, FIRM, r["authoritative"] - 1) + body
    elif r["authoritative"] == 0:
        body = [_pick(rng, HEDGES)] + body
    body += padding
    # repetition: copies of sentences already said
    copies = {0: [], 1: [1], 2: [1, 1], 3: [2, 2]}[r["repetitive"]]
    sources = _take(rng, content + padding, len(copies)) or content[:1]
    for n, s in zip(copies, sources * 2):
        body += [s] * n
    if r["clear"] <= 1:
        body += _take(rng, CONVOLUTED, 2 - r["clear"])

    steps = _steps(rng, spec["steps"], r["step_by_step"])

    tail: list[str] = []
    if not (unsafe and r["harmless"] >= 2) and r["admits_limits"]:
        tail += list(_take(rng, LIMITS[r["admits_limits"]], 1))
        if r["admits_limits"] == 3:
            tail += _take(rng, LIMITS[2], 1)
    elif unsafe and r["admits_limits"] == 3 and r["harmless"] == 2:
        tail += _take(rng, LIMITS[3], 1)
    if r["clear"] == 3:
        tail.append(_fill(_pick(rng, SUMMARY), **t))
    n_questions = r["interactive"] - (1 if (cases["intent_unclear"] and r.get("clarifies_intent", 0) >= 2) else 0)
    tail += [_fill(s, **t) for s in _take(rng, QUESTIONS, n_questions)]

    text = _render(r["well_formatted"], head, core, code, body, steps, tail)
    if cases["w_constraints"]:
        if "prefix" in ctx["constraints"] and _met(ctx, r, "prefix"):
            text = ("Answer: " if r["well_formatted"] == 0 else "Answer:\n\n") + text
        if "suffix" in ctx["constraints"] and _met(ctx, r, "suffix"):
            text += " END" if r["well_formatted"] == 0 else "\n\nEND"
    return text


def _met(ctx: dict[str, Any], r: dict[str, Any], kind: str) -> bool:
    return r["constraint_scores"][ctx["constraints"].index(kind)] > 0


def _render(fmt: int, head, core, code, body, steps, tail) -> str:
    """Lay the sentences out at the formatting level: one block (0) ... headings and lists (3)."""
    if fmt == 0:
        inline_code = [" ".join(code.split())] if code else []
        numbered = [f"Step {i}: {s}" for i, s in enumerate(steps, 1)]
        return " ".join(head + core + inline_code + body + numbered + tail)
    block = f"```python\n{code}\n```" if code else ""
    answer = "\n\n".join(p for p in (" ".join(core), block) if p)
    if fmt == 1:
        numbered = "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))
        parts = [" ".join(head), answer, " ".join(body), numbered, " ".join(tail)]
        return "\n\n".join(p for p in parts if p)
    bullets = [f"- {s}" for s in body]
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    if fmt == 2:
        parts = [" ".join(head), answer, "\n".join(bullets), numbered, " ".join(tail)]
        return "\n\n".join(p for p in parts if p)
    if bullets:
        bullets[0] = f"- **Key point:** {body[0]}"
    sections = [("Overview", " ".join(head)), ("Answer", answer), ("Details", "\n".join(bullets)),
                ("Steps", numbered), ("Summary", " ".join(tail))]
    return "\n\n".join(f"## {title}\n\n{text}" for title, text in sections if text)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------


def _annotation_row(sample: Sample, parsed: dict[str, Any], seed: int) -> dict[str, Any]:
    key = hashlib.sha256("\x1f".join((sample.id, ANNOTATOR, PROMPT_VERSION, "ratings")).encode()).hexdigest()[:20]
    return {
        "id": key, "request_key": key, "sample_id": sample.id, "annotator": ANNOTATOR,
        "prompt_version": PROMPT_VERSION, "step": "ratings", "orientation": "AB",
        "params": json.dumps({"seed": seed, "generator": GENERATOR}, sort_keys=True),
        "raw": None, "parsed": json.dumps(parsed, sort_keys=True, ensure_ascii=False),
        "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "latency_s": 0.0,
        "status": "ok", "error": None, "attempts": 1,
    }


def generate(seed: int = 0, n_per_group: int = N_PER_GROUP) -> tuple[ImportBatch, list[dict[str, Any]], list[dict[str, Any]]]:
    """The whole demo, without touching a store: (batch, annotation rows, true profile rows).

    Same seed, same output, byte for byte.
    """
    rng = np.random.default_rng(seed)
    batch = ImportBatch(
        dataset=Dataset(name=DEMO_DATASET, source=GENERATOR, licence="CC0-1.0 (synthetic)",
                        description=DESCRIPTION, synthetic=True),
        judges=[Judge(name, "synthetic", notes=spec["notes"]) for name, spec in JUDGES.items()],
        source_file=f"{GENERATOR}?seed={seed}&n_per_group={n_per_group}",
    )
    annotations: list[dict[str, Any]] = []
    weights = {(j, g): np.array(list(true_weights(j, g).values())) for g in catalogue.group_keys() for j in JUDGES}
    seen: set[str] = set()
    for gi, group in enumerate(catalogue.group_keys()):
        for i in range(n_per_group):
            ctx = _make_query(rng, group)
            ra, plan_a = _draw_ratings(rng, ctx)
            rb, plan_b = _draw_ratings(rng, ctx)
            text_a, text_b = _compose(rng, ctx, ra, plan_a), _compose(rng, ctx, rb, plan_b)
            ra["lengthy"], rb["lengthy"] = word_count(text_a), word_count(text_b)
            model_a, model_b = _take(rng, MODELS, 2)
            sample = Sample(
                dataset=DEMO_DATASET, query=ctx["query"], response_a=text_a, response_b=text_b,
                model_a=model_a, model_b=model_b, reference=_reference(ctx["item"]),
                scenario_group=group, scenario=ctx["scenario"], cases=dict(ctx["cases"]),
                source_id=f"demo-{seed}-{gi:02d}-{i:04d}", metadata={"synthetic": True, "seed": seed},
            )
            while sample.id in seen:  # an exact repeat: keep it as its own row
                sample = Sample(**{**sample.__dict__, "id": "", "occurrence": sample.occurrence + 1})
            seen.add(sample.id)
            feats = features.resolve(sample.id, FEATURE_SOURCE, ra, rb, cases=ctx["cases"],
                                     provenance={"generator": GENERATOR, "seed": seed})
            x = np.array([f.value for f in feats], dtype=float)
            for judge in JUDGES:
                batch.labels.append(_label(rng, sample.id, judge, float(x @ weights[judge, group])))
            batch.samples.append(sample)
            batch.features.extend(feats)
            parsed = {"query_analysis": ctx["analysis"], "response_a": ra, "response_b": rb}
            annotations.append(_annotation_row(sample, parsed, seed))
    return batch, annotations, true_profiles(seed, n_per_group)


def _label(rng: np.random.Generator, sample_id: str, judge: str, z: float) -> Label:
    """One judge's label from its content logit ``z``: one verdict with A shown first (and ties,
    Davidson's model, where the judge has them), or a verdict in each order, the shown-first bias
    added to the response shown first, combined as the importers combine real ones."""
    spec = JUDGES[judge]
    bias = float(spec["position"])
    if not spec["both_orders"]:
        logits = [0.5 * (z + bias), -0.5 * (z + bias)]
        if spec["tie_log_nu"] is not None:
            logits.append(float(spec["tie_log_nu"]))
        p = np.exp(np.array(logits) - max(logits))
        p /= p.sum()
        choice = ("A", "B", "tie")[_level(rng, p)]
        # A crowd's vote carries no probability of its own (as on Chatbot Arena): storing the generator's
        # exact P(A) would hand its soft-label fit information no real crowd gives.
        return Label(sample_id, judge, choice, source=GENERATOR)
    p_ab, p_ba = _sigmoid(z + bias), _sigmoid(z - bias)  # A shown first; B shown first (mapped back to A/B)
    ab = "A" if rng.random() < p_ab else "B"
    ba = "A" if rng.random() < p_ba else "B"
    choice, prob = combine_verdicts(ab, ba)
    return Label(sample_id, judge, choice, prob_a=round((p_ab + p_ba) / 2, 6), verdict_ab=ab, verdict_ba=ba,
                 source=GENERATOR)


def _reference(item: dict[str, Any]) -> str | None:
    if "reference" in item:
        return item["reference"]
    if "code" in item:
        return f"```python\n{item['code']}\n```"
    return item.get("answer")


def build_demo(store: Store, *, seed: int = 0, n_per_group: int = N_PER_GROUP, fit: bool = True,
               on_progress=None, prebuilt: bool = True) -> ImportResult:
    """Write the demo into the store in one transaction. Building it again adds nothing.

    The default demo (seed 0, ``N_PER_GROUP``) going into a store without any of its tables' rows is
    copied from the prebuilt file (``PREBUILT``: exactly what generating and writing it gives, a test
    checks; under a second instead of three) when the file was made for this schema and these catalogues;
    otherwise, or with ``prebuilt=False``, it is generated and written. With ``fit`` (the default) the
    judges' profiles are then fitted on the fast path (a few seconds), so every page has something to
    show on a first start; ``on_progress(stage, done, total)`` hears the generation, the write (or the
    copy) and the fit's steps (the dashboard's first start shows them)."""
    result = None
    if prebuilt and seed == 0 and n_per_group == N_PER_GROUP:
        result = _copy_prebuilt(store, on_progress)
    if result is None:
        if on_progress:
            on_progress("generating the pairs, their annotations and the judges' labels", 0, 2)
        batch, annotations, profiles = generate(seed, n_per_group)
        if on_progress:  # the write runs mostly in SQLite, without the GIL: a caller can do other work beside it
            on_progress("writing them into the store", 1, 2)
        result = store.write_batch(batch, annotations=annotations, profiles=profiles)
    if fit:
        from .fit import dissect

        if on_progress:
            on_progress("fitting the demo judges' profiles", 0, 1)
        dissect(store, DEMO_DATASET, FEATURE_SOURCE, on_progress=on_progress)
    return result


# ---------------------------------------------------------------------------------------------
# The prebuilt default demo: a first start copies it instead of generating and writing it
# ---------------------------------------------------------------------------------------------

#: the default demo (seed 0, N_PER_GROUP) as ``build_demo`` writes it: a gzip'd SQLite image of the rows
#: of TABLES without the COPY_TIME columns (``Store.snapshot``), made by ``write_prebuilt``
PREBUILT = catalogue.DATA_DIR / "demo-prebuilt.sqlite.gz"
#: the layout of the file (its meta keys, what COPY_TIME leaves out); a change makes files of another one unusable
PREBUILT_FORMAT = 1
#: the tables ``build_demo`` writes, in the order a copy fills them (a table after those its rows refer to)
TABLES = ("datasets", "samples", "judges", "labels", "features", "annotations", "profiles")
#: per table, what a write fills as it runs, so not in the file: the write's time, and the profiles' row id
#: (the store's AUTOINCREMENT assigns it, as it does to a written profile)
COPY_TIME = {"datasets": ("imported_at", "updated_at"), "judges": ("created_at",), "labels": ("created_at",),
             "features": ("created_at",), "annotations": ("created_at",), "profiles": ("id", "created_at")}
REGENERATE = "python -m core demo --write-prebuilt"


def prebuilt_meta() -> dict[str, str]:
    """What the prebuilt file must have been made for to stand for a fresh build here: its format, the
    seed and size, the schema (the store's migrations) and the data the generator reads that a setting
    can change (the attribute catalogue, ``PREFDISSECT_ATTRIBUTES``; the scenario groups and cases; the
    judges' true weights). The generator's code and NumPy's streams are not in it: they change only with
    the code and its pinned requirements, and a test (tests/test_demo.py) holds the file to them."""
    from .migrations import names

    inputs = json.dumps({
        "attributes": [dataclasses.asdict(a) for a in catalogue.attributes()],
        "scenarios": catalogue._scenarios(),
        "judges": _judge_table(),
    }, sort_keys=True, ensure_ascii=False)
    return {"format": str(PREBUILT_FORMAT), "generator": GENERATOR, "seed": "0", "n_per_group": str(N_PER_GROUP),
            "migrations": ",".join(names()), "inputs": hashlib.sha256(inputs.encode()).hexdigest()}


def _prebuilt_image(path) -> tuple[bytes | None, str | None]:
    """(the prebuilt file's database image, None) when it stands for a fresh build of the default demo here,
    else (None, why not)."""
    import gzip

    from .store import snapshot_meta

    if not path.is_file():
        return None, f"{path} is missing"
    try:
        image = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        return None, f"{path} is not a readable prebuilt demo ({e})"
    meta = snapshot_meta(image)
    if meta is None:
        return None, f"{path} is not a readable prebuilt demo (not a database image with a meta table)"
    want = prebuilt_meta()
    diff = [k for k in sorted(set(want) | set(meta)) if meta.get(k) != want.get(k)]
    return (None, f"{path} was made for another {', '.join(diff)}") if diff else (image, None)


def prebuilt_mismatch(path=None) -> str | None:
    """Why the prebuilt file cannot stand for a fresh build of the default demo here, or None when it can."""
    return _prebuilt_image(PREBUILT if path is None else path)[1]


def _copy_prebuilt(store: Store, on_progress) -> ImportResult | None:
    """The default demo copied from ``PREBUILT`` into the store, or None (nothing written) when the file is
    missing, unreadable or made for another schema or catalogue, or the store has rows in the demo's tables."""
    image, _ = _prebuilt_image(PREBUILT)
    if image is None:
        return None
    if on_progress:  # the copy runs in SQLite, without the GIL: a caller can do other work beside it
        on_progress("writing the demo's prebuilt pairs, annotations and labels into the store", 0, 1)
    ts = now()
    fill = {t: {c: ts for c in cols if c != "id"} for t, cols in COPY_TIME.items()}
    counts = store.copy_snapshot(image, TABLES, fill=fill, meta=prebuilt_meta())
    if counts is None:
        return None
    return ImportResult(dataset=DEMO_DATASET, samples_added=counts["samples"], samples_seen=counts["samples"],
                        labels_written=counts["labels"], judges=list(JUDGES), features_written=counts["features"])


def write_prebuilt(path=None) -> int:
    """Generate and write the default demo into a new store (a temporary file), and save its rows as the
    prebuilt file (``PREBUILT`` by default; ``python -m core demo --write-prebuilt``). Returns the file's size
    in bytes. Run it when the generator, the schema or a catalogue changes (tests/test_demo.py says when).
    Refused under another attribute catalogue (``PREFDISSECT_ATTRIBUTES``): the file is the default demo's."""
    import gzip
    import os
    import tempfile
    from pathlib import Path

    if os.environ.get("PREFDISSECT_ATTRIBUTES", "").strip():
        raise ValueError("the prebuilt demo is made with the default attribute catalogue: unset PREFDISSECT_ATTRIBUTES")
    path = Path(PREBUILT if path is None else path)
    with tempfile.TemporaryDirectory(prefix="demo-prebuilt-") as tmp, Store(Path(tmp) / "demo.db") as store:
        build_demo(store, fit=False, prebuilt=False)
        image = store.snapshot(TABLES, omit=COPY_TIME, meta=prebuilt_meta())
    data = gzip.compress(image, compresslevel=9, mtime=0)  # mtime 0: the same rows give the same file
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
    return len(data)
