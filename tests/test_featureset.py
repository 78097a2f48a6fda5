"""Feature-set names: one value type builds, reads, ranks and shows them; stored names never change."""

import pytest

from core import annotate, demo, featureset, heuristics, prompts
from core.featureset import FeatureSet


@pytest.mark.parametrize("name,kind,model,version,both", [
    ("llm:gpt-4o:pd-v1", "llm", "gpt-4o", "pd-v1", False),
    ("llm:gpt-4o:pd-v1:both", "llm", "gpt-4o", "pd-v1", True),
    ("llm:org/model:7b:pd-v2", "llm", "org/model:7b", "pd-v2", False),  # a model name with a colon
    ("hf:paper", "hf", None, None, False),
    ("demo", "demo", "demo-generator", "demo-v1", False),
    ("heuristic:v1", "heuristic", None, "v1", False),
    ("published", "published", None, None, False),
    ("my-own-set", "other", None, None, False),
    ("llm:nocolon", "other", None, None, False),
])
def test_parse_reads_every_stored_name_and_str_gives_it_back(name, kind, model, version, both):
    fs = FeatureSet.parse(name)
    assert (fs.kind, fs.model, fs.version, fs.both_orders) == (kind, model, version, both)
    assert str(fs) == fs.name == name


def test_builders_make_the_names_the_store_already_holds():
    assert FeatureSet.llm("m", "pd-v1").name == "llm:m:pd-v1"
    assert FeatureSet.llm("m", "pd-v1", both_orders=True).name == "llm:m:pd-v1:both"
    assert FeatureSet.parse(FeatureSet.llm("a:b", "v9", True).name) == FeatureSet.llm("a:b", "v9", True)
    assert annotate.feature_source("loopback-1", True) == f"llm:loopback-1:{prompts.prompts()['version']}:both"
    assert heuristics.SOURCE == "heuristic:v1" == str(featureset.HEURISTIC)
    assert demo.FEATURE_SOURCE == "demo" and (demo.ANNOTATOR, demo.PROMPT_VERSION) == ("demo-generator", "demo-v1")


def test_annotator_is_known_for_llm_and_demo_features_only():
    assert FeatureSet.parse("llm:gpt-4o:pd-v1:both").annotator == ("gpt-4o", "pd-v1")
    assert FeatureSet.parse("demo").annotator == ("demo-generator", "demo-v1")
    assert FeatureSet.parse("heuristic:v1").annotator is None
    assert FeatureSet.parse("hf:paper").annotator is None


def test_the_default_is_the_richest_feature_set():
    assert featureset.richest(["heuristic:v1", "demo", "hf:paper", "llm:m:v"]) == "llm:m:v"
    assert featureset.richest(["heuristic:v1", "demo", "hf:paper"]) == "hf:paper"
    assert featureset.richest(["heuristic:v1", "demo"]) == "demo"
    assert featureset.richest(["heuristic:v1"]) == "heuristic:v1"
    assert featureset.richest(["zeta", "heuristic:v1"]) == "zeta"  # equals keep their given order
    assert featureset.richest([]) is None


def test_labels_name_each_kind():
    assert "gpt-4o" in FeatureSet.parse("llm:gpt-4o:pd-v1:both").label
    assert "both orders" in FeatureSet.parse("llm:gpt-4o:pd-v1:both").label
    assert FeatureSet.parse("heuristic:v1").label == "offline heuristics (v1)"
    assert FeatureSet.parse("custom").label == "custom"


def test_required_is_the_default_or_an_error_saying_how_to_get_features():
    class Sources:
        def __init__(self, names):
            self.names = names

        def feature_sources(self, dataset):
            return [{"source": n} for n in self.names]

    assert featureset.required(Sources(["heuristic:v1", "llm:gpt-4o:v1"]), "d") == "llm:gpt-4o:v1"
    with pytest.raises(ValueError, match=r"dataset 'd' has no features yet: run `python -m core annotate --dataset d`"):
        featureset.required(Sources([]), "d")
