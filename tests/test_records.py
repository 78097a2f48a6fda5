"""Typed records' own rules: a judge's size read off its name."""

import pytest

from core import compare, importers
from core.records import size_from_name

# Names from the tests of the two readers this one replaces (compare.size_from_name,
# importers.judge_size_b), and the names on which they disagreed, with the right answer.
SIZES = [
    # both agreed
    ("tulu-2-dpo-70b", 70), ("llama-2-7b-chat", 7), ("llama-2-70b-chat", 70), ("mistral-8x7b", 56),
    ("mistral-8x7b-instruct-v0.1", 56), ("mixtral-8x22b", 176), ("vicuna-13b-v1.5", 13), ("yi-6b-chat", 6),
    ("wizardLM-70b-v1.0", 70), ("Qwen-14B", 14), ("qwen1.5-72b-chat", 72), ("llama-3.1-8b", 8),
    ("phi-3-mini-3.8b", 3.8), ("bloomz-7b1", 7),
    ("gpt-4", None), ("gpt-4-1106-preview", None), ("gpt-3.5-turbo-1106", None), ("human", None),
    ("arena-human", None), ("zephyr-7b-beta", 7), ("zephyr", None), ("claude-3-opus", None),
    ("llama-2-7b-4bit", 7), ("model-4bit", None),
    # they disagreed: the importers' reader returned None for any "gpt-" name, though GPT-J and
    # GPT-NeoX are open models of known size
    ("gpt-j-6b", 6), ("gpt-neox-20b", 20),
    # the importers' reader wanted a word boundary after the "b", so "_v1" hid the size
    ("llama-70b_v1", 70),
    # compare's reader wanted no word character before the size, so an underscore hid it
    ("llama2_7b", 7),
    # the importers' reader read a size glued to letters (a hash like "3f2b" -> 2, "qwen7b" -> 7); a size
    # must be a token of its own, as compare's reader had it (so "qwen7b" says nothing: better no group than a wrong one)
    ("model-3f2b", None), ("qwen7b", None),
]


@pytest.mark.parametrize("name,size", SIZES)
def test_size_from_name(name, size):
    assert size_from_name(name) == size


def test_one_reader_behind_the_paper_table_and_the_similarity_groups():
    assert importers.PAPER_JUDGE_SIZES["mistral-8x7b"] == 56 and importers.PAPER_JUDGE_SIZES["human"] is None
    assert compare.judge_sizes(["gpt-neox-20b", "x"], {"x": 3.0}) == {"gpt-neox-20b": 20.0, "x": 3.0}
