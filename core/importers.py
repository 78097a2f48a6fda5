"""Importers: pairwise preference files -> one validated ImportBatch -> one store transaction.

Every parser reads a whole file into an :class:`~core.records.ImportBatch` and checks every row
before the store is touched; :meth:`Store.write_batch` then writes it all or nothing. Bad input
raises :class:`InputError`, which names the file, the 1-based data row and the field.

Sample ids are content hashes (``records.sample_id``), so re-importing a file adds nothing, and
the same pair imported from two files of one dataset (e.g. three AlpacaEval annotators judging
the same outputs) is one sample with several judges' labels. Exact repeats of a pair inside one
file get ``occurrence`` 1, 2, ... in file order, so every row is kept.

Formats (``FORMATS``): ``autoj``, ``pandalm``, ``alpaca_eval``, ``hf`` (the paper's Hugging Face
layout), ``arena`` (Chatbot Arena conversations, or the paper's raw rows) and ``generic``
(CSV / JSONL / JSON list / parquet with a column mapping). Row numbers: the line for JSONL, the
data row after the header for CSV, the list position for JSON lists and parquet.

Empty responses are real model outputs in the benchmark files (Auto-J, PandaLM), so the
benchmark importers keep them and count them (``counts["empty_responses"]``); ``generic``
rejects them unless ``allow_empty=True``. A query must never be empty.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import catalogue, features
from .records import (
    CHOICES,
    JUDGE_KINDS,
    Dataset,
    Feature,
    ImportBatch,
    ImportResult,
    Judge,
    Label,
    Sample,
    choice_from_prob,
    combine_verdicts,
    word_count,
)


class InputError(ValueError):
    """Bad input, pointing at the file, the 1-based data row (or None) and the field (or None)."""

    def __init__(self, file: Any, message: str, *, row: int | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        self.message = re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip()  # always one line
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [Path(self.file).name if self.file else "input"]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts) + ": " + self.message


@dataclass
class ParsedFile(ImportBatch):
    """An ImportBatch plus what the parser counted (rows, repeats, failed or unparsable verdicts...)."""

    counts: Counter = field(default_factory=Counter)


@dataclass
class ImportReport(ImportResult):
    """What ``import_file`` returns: the store's ImportResult plus the parser's counts."""

    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------- reading files

_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
          ".parquet": "parquet", ".pq": "parquet"}


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _first_byte(path: Path) -> bytes:
    """The first non-whitespace byte of the file (b"" for an empty or blank file)."""
    with path.open("rb") as f:
        while chunk := f.read(65536):
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return stripped[:1]
    return b""


def _checked_path(path: Any) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    if not _first_byte(p):
        raise InputError(p, "the file is empty")
    return p


def read_rows(path: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row dict) for every data row of a JSONL, JSON-list, CSV/TSV or parquet file.

    The file's existence, type and emptiness are checked at once; row errors surface while
    iterating. Rows stream for JSONL, CSV and parquet, so a large file is never held twice.
    """
    p = Path(path)
    kind = _KINDS.get(p.suffix.lower())
    if kind is None:
        raise InputError(p, f"unsupported file type {p.suffix or '(none)'!r}: expected .jsonl, .json, .csv, .tsv or .parquet")
    p = _checked_path(p)
    if kind == "json" and _first_byte(p) == b"{":
        kind = "jsonl"  # a .json file holding one object per line
    if kind == "jsonl":
        return _jsonl_rows(p)
    if kind == "json":
        return _json_rows(p)
    if kind == "parquet":
        return _parquet_rows(p)
    return _csv_rows(p, "\t" if kind == "tsv" else ",")


def _decode(path: Path, raw: bytes, line: int, *, row: int | None) -> str:
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            path, f"not valid UTF-8: byte {raw[e.start]:#04x} at line {line}, column {e.start + 1}", row=row
        ) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    found = False
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            line = _decode(path, raw, n, row=n)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                hint = " (a .json file must hold a list of objects, or one object per line)" if path.suffix == ".json" else ""
                raise InputError(path, f"invalid JSON at line {n}, column {e.colno}: {e.msg}{hint}", row=n) from None
            if not isinstance(obj, dict):
                raise InputError(path, f"expected a JSON object, found {_type(obj)}", row=n)
            found = True
            yield n, obj
    if not found:
        raise InputError(path, "no data rows")


def load_json(path: Any) -> Any:
    """A whole JSON document, with the line of a decoding or syntax error in the message."""
    p = _checked_path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(p, f"not valid UTF-8: byte {raw[e.start]:#04x} at line {line}") from None
    del raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(p, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    data = load_json(path)
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of objects, found {_type(data)}")
    if not data:
        raise InputError(path, "no data rows")
    for n, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a JSON object, found {_type(obj)}", row=n)
        yield n, obj


class _LineError(Exception):
    pass


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # responses are often longer than 128 kB

    def lines(f):
        for n, raw in enumerate(f, 1):
            try:
                yield _decode(path, raw, n, row=None)
            except InputError as e:
                raise _LineError(e.message) from None

    n, header = 0, None
    with path.open("rb") as f:
        reader = csv.reader(lines(f), delimiter=delimiter, strict=True)
        try:
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise InputError(path, "no header row")
            dupes = sorted(h for h, k in Counter(header).items() if k > 1)
            if dupes:
                raise InputError(path, f"duplicate column name(s) in the header: {', '.join(map(repr, dupes))}")
            for n, values in enumerate(reader, 1):
                if not values:
                    continue
                if len(values) != len(header):
                    raise InputError(path, f"expected {len(header)} fields as in the header, found {len(values)}", row=n)
                yield n, dict(zip(header, values))
        except _LineError as e:
            raise InputError(path, str(e), row=None if header is None else n + 1) from None
        except csv.Error as e:
            raise InputError(path, f"malformed CSV: {e}", row=n + 1) from None
    if n == 0:
        raise InputError(path, "no data rows (only a header)")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, f"not a readable parquet file: {e}") from None
    if pf.metadata.num_rows == 0:
        raise InputError(path, "no data rows")
    n = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            n += 1
            yield n, row


class _Row:
    """One input row (or a nested object in it) that knows where it came from, for errors."""

    __slots__ = ("file", "n", "data", "prefix")

    def __init__(self, file: Path, n: int | None, data: Mapping[str, Any], prefix: str = ""):
        self.file, self.n, self.data, self.prefix = file, n, data, prefix

    def error(self, key: str | None, message: str) -> InputError:
        name = None if key is None else self.prefix + key
        return InputError(self.file, message, row=self.n, field=name or None)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return default if value == "" and default is None else value  # CSV's empty cell is "no value"

    def require(self, key: str) -> Any:
        if key not in self.data:
            raise self.error(key, "missing (the row has no such field)")
        return self.data[key]

    def text(self, key: str, *, optional: bool = False, allow_empty: bool = False, scalars: bool = False) -> str | None:
        """A string field. ``scalars`` turns a number or boolean into its text (e.g. ``true`` -> "True")."""
        if optional and self.get(key) is None:
            return None
        value = self.require(key)
        if scalars and isinstance(value, (bool, int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_type(value)}")
        if not allow_empty and not value.strip():
            raise self.error(key, "is empty")
        return value

    def number(self, key: str) -> float | None:
        value = self.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            x = float(value)
        except (TypeError, ValueError):
            raise self.error(key, f"must be a number, not {_show(value)}") from None
        if math.isnan(x):
            return None
        return x

    def sub(self, key: str, *, optional: bool = False) -> "_Row | None":
        """A nested object, as a row whose errors name ``key.field``."""
        value = self.get(key) if optional else self.require(key)
        if value is None and optional:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be an object, not {_type(value)}")
        return _Row(self.file, self.n, value, f"{self.prefix}{key}.")


def _records(path: Any) -> Iterator[_Row]:
    p = Path(path)
    return (_Row(p, n, data) for n, data in read_rows(p))


# ---------------------------------------------------------------------------- labels

def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


class Vocab(dict):
    """Raw verdict spellings -> "A" / "B" / "tie", looked up case-insensitively (1 and 1.0 alike).

    A value of None means "no verdict" (e.g. an unparsable judge output): no label, no error.
    """

    def __init__(self, mapping: Mapping[Any, str | None]):
        super().__init__(mapping)
        self.folded = {_label_key(k): v for k, v in mapping.items()}


AB_TIE = Vocab({"A": "A", "B": "B", "tie": "tie"})
AUTOJ = Vocab({"0": "A", "1": "B", "2": "tie"})
AUTOJ_SWAPPED = Vocab({"0": "B", "1": "A", "2": "tie"})  # the exchanged-order run, mapped back
PANDALM = Vocab({"1": "A", "2": "B", "0": "tie"})
GPT35_PANDALM = Vocab({"1": "A", "2": "B", "Tie": "tie", "garbage": None})
HF_LABELS = Vocab({"response_1": "A", "response_2": "B", "tie": "tie"})
ARENA_WINNER = Vocab({"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "tie"})


def to_choice(rec: _Row, key: str, value: Any, vocab: Vocab) -> str | None:
    """A raw verdict -> A/B/tie; None for a missing value; an unknown value raises, naming the field."""
    if value is None or value == "":
        return None
    k = None if isinstance(value, (bool, dict, list)) else _label_key(value)
    if k in vocab.folded:
        return vocab.folded[k]
    raise rec.error(key, f"unknown label value {_show(value)} (expected one of {', '.join(map(str, vocab))})")


def _probability(rec: _Row, key: str) -> float | None:
    p = rec.number(key)
    if p is not None and not 0.0 <= p <= 1.0:
        raise rec.error(key, f"must be a probability in [0, 1], not {_show(rec.get(key))}")
    return p


def _vocab_option(path: Path, value: Any) -> Vocab:
    """``label_values``: a dict or "1=A,2=B,0=tie" (an empty right side means "no label")."""
    if value is None:
        return AB_TIE
    if isinstance(value, str):
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise InputError(path, "label_values must look like '1=A,2=B,0=tie'", field="label_values")
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, Mapping) or not value:
        raise InputError(path, "label_values must be a mapping of raw value -> A/B/tie", field="label_values")
    out: dict[str, str | None] = {}
    for raw, choice in value.items():
        choice = choice or None
        if choice is not None and choice not in CHOICES:
            raise InputError(path, f"label_values maps {raw!r} to {choice!r}, not one of A, B, tie", field="label_values")
        out[str(raw)] = choice
    return Vocab(out)


# ---------------------------------------------------------------------------- building a batch


class _Builder:
    """Collects samples, judges and labels of one file; numbers exact repeats of a pair."""

    def __init__(self, dataset: Dataset, file: Path):
        if not isinstance(dataset.name, str) or not dataset.name.strip():
            raise InputError(file, "the dataset name must be a non-empty string", field="dataset")
        self.batch = ParsedFile(dataset=dataset, source_file=str(file))
        self.counts = self.batch.counts
        self._judges: dict[str, Judge] = {}
        self._used: set[str] = set()
        self._seen: Counter = Counter()

    def judge(self, name: str, kind: str, *, size_b: float | None = None, notes: str = "") -> str:
        if name not in self._judges:
            self._judges[name] = Judge(name, kind, notes=notes, size_b=size_b)
        return name

    def sample(self, query: str, response_a: str, response_b: str, **fields: Any) -> Sample:
        key = (query, response_a, response_b)
        occurrence = self._seen[key]
        self._seen[key] = occurrence + 1
        self.counts["rows"] += 1
        if occurrence:
            self.counts["repeats"] += 1
        if not response_a.strip() or not response_b.strip():
            self.counts["empty_responses"] += 1
        s = Sample(self.batch.dataset.name, query, response_a, response_b, occurrence=occurrence, **fields)
        self.batch.samples.append(s)
        return s

    def label(self, sample: Sample, judge: str, choice: str | None, *, prob_a: float | None = None,
              verdict_ab: str | None = None, verdict_ba: str | None = None, source: str = "") -> None:
        """One label; nothing when there is neither a choice nor a probability."""
        if choice is None:
            if prob_a is None:
                return
            choice = choice_from_prob(prob_a)
        self._used.add(judge)
        self.batch.labels.append(Label(sample.id, judge, choice, prob_a, verdict_ab, verdict_ba, source))

    def features(self, items: list[Feature]) -> None:
        self.batch.features.extend(items)

    def finish(self) -> ParsedFile:
        if not self.batch.samples:
            raise InputError(self.batch.source_file, "no data rows")
        self.batch.judges = [j for name, j in self._judges.items() if name in self._used]
        return self.batch


def _sibling(path: Path, explicit: Any, default_name: str) -> Path | None:
    """An auxiliary file: the one given (which must exist) or ``default_name`` next to ``path`` if present."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(p, "no such file")
        return p
    p = path.parent / default_name
    return p if p.is_file() else None


# ---------------------------------------------------------------------------- autoj


def parse_autoj(path: Any, *, dataset: str = "autoj-pairwise", outputs: Any = None,
                exchange_outputs: Any = None) -> ParsedFile:
    """Auto-J's pairwise test set: human labels plus Auto-J-13B's verdicts in both orders.

    ``outputs`` / ``exchange_outputs``: Auto-J's verdicts with the responses in the original and in
    the swapped order (default: ``pairwise_example_output.jsonl`` and
    ``pairwise_exchange_example_output.jsonl`` next to the test file, when present).
    """
    path = Path(path)
    b = _Builder(Dataset(dataset, source=f"GAIR-NLP/auto-j pairwise test set ({path.name})",
                         description="Real user queries over 58 Auto-J scenarios with human pairwise labels."), path)
    # per presentation order: (file, verdicts mapped back to the original A/B, row by row)
    orders: dict[str, tuple[Path, list[str | None]]] = {}
    for order, explicit, default_name, vocab in (
        ("ab", outputs, "pairwise_example_output.jsonl", AUTOJ),
        ("ba", exchange_outputs, "pairwise_exchange_example_output.jsonl", AUTOJ_SWAPPED),
    ):
        p = _sibling(path, explicit, default_name)
        if p:
            orders[order] = (p, [to_choice(rec, "output", rec.require("output"), vocab) for rec in _records(p)])
    human = b.judge("autoj-human", "human", notes="Auto-J test set human labels (ties kept)")
    autoj = b.judge("auto-j-13b", "llm", size_b=13, notes="Auto-J-13B, verdicts in both presentation orders")
    for i, rec in enumerate(_records(path)):
        scenario = rec.text("scenario")
        s = b.sample(rec.text("prompt"), rec.text("response 1", allow_empty=True), rec.text("response 2", allow_empty=True),
                     scenario=scenario, scenario_group=catalogue.group_for_scenario(scenario))
        b.label(s, human, to_choice(rec, "label", rec.require("label"), AUTOJ), source="autoj:label")
        ab, ba = (orders[o][1][i] if o in orders and i < len(orders[o][1]) else None for o in ("ab", "ba"))
        combined = combine_verdicts(ab, ba)
        if combined:
            b.label(s, autoj, combined[0], prob_a=combined[1], verdict_ab=ab, verdict_ba=ba, source="autoj:outputs")
    rows = b.counts["rows"]
    for p, verdicts in orders.values():
        if len(verdicts) != rows:
            raise InputError(p, f"has {len(verdicts)} verdicts but {path.name} has {rows} rows; they must align row by row")
    return b.finish()


# ---------------------------------------------------------------------------- pandalm

_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[bm]\b", re.I)


def _split_models(rec: _Row, key: str) -> tuple[str, str]:
    """ "<model1>_<model2>" -> the two names; with several '_', the split whose sides both name a size."""
    raw = rec.text(key)
    parts = raw.split("_")
    splits = [("_".join(parts[:i]), "_".join(parts[i:])) for i in range(1, len(parts))]
    splits = [(a, b) for a, b in splits if a and b]
    sized = [(a, b) for a, b in splits if _SIZE.search(a) and _SIZE.search(b)]
    choice = sized[:1] or (splits if len(splits) == 1 else [])
    if not choice:
        raise rec.error(key, f"cannot split {_show(raw)} into two model names ('<model1>_<model2>')")
    return choice[0]


def parse_pandalm(path: Any, *, dataset: str = "pandalm-test", gpt35: Any = None, pandalm7b: Any = None) -> ParsedFile:
    """PandaLM's human-annotated test set: three annotators, their majority, gpt-3.5-turbo, PandaLM-7B.

    ``gpt35`` / ``pandalm7b``: the judges' result files aligned by ``idx`` (default:
    ``gpt-3.5-turbo-testset-v1.json`` and ``pandalm-7b-testset-v1.json`` next to the test file,
    skipped when absent). Empty responses and JSON booleans (a model that answered "True") are kept.
    """
    path = Path(path)
    b = _Builder(Dataset(dataset, source=f"WeOpenML/PandaLM test set ({path.name})", licence="Apache-2.0",
                         description="Self-instruct user-oriented tasks; responses of five ~7B models; three human annotators."), path)
    b.judge("gpt-3.5-turbo", "llm", notes="PandaLM's gpt-3.5-turbo judgements")
    b.judge("pandalm-7b", "llm", size_b=7, notes="PandaLM-7B judgements")
    llm_results = []  # (judge, (file, idx -> verdict)) for the result files found
    for judge, explicit, default_name, key, vocab in (
        ("gpt-3.5-turbo", gpt35, "gpt-3.5-turbo-testset-v1.json", "gpt_result", GPT35_PANDALM),
        ("pandalm-7b", pandalm7b, "pandalm-7b-testset-v1.json", "pandalm_result", PANDALM),
    ):
        p = _sibling(path, explicit, default_name)
        if p:
            llm_results.append((judge, _by_idx(p, key, vocab)))
    annotators = [b.judge(f"pandalm-annotator{k}", "human", notes=f"PandaLM human annotator {k}") for k in (1, 2, 3)]
    majority = b.judge("pandalm-human-majority", "human", notes="Majority of PandaLM's three annotators (no majority: tie)")
    for rec in _records(path):
        idx = rec.require("idx")
        if not isinstance(idx, (int, str)) or isinstance(idx, bool) or str(idx) == "":
            raise rec.error("idx", f"must be an integer or a string, not {_show(idx)}")
        key = str(idx)
        parts = [rec.text("instruction", allow_empty=True), rec.text("input", optional=True, allow_empty=True) or ""]
        query = "\n\n".join(p for p in parts if p.strip())  # one row has a blank instruction and all in input
        if not query:
            raise rec.error("instruction", "is empty, and so is the input")
        model_a, model_b = _split_models(rec, "cmp_key")
        s = b.sample(
            query,
            rec.text("response1", allow_empty=True, scalars=True),
            rec.text("response2", allow_empty=True, scalars=True),
            model_a=model_a, model_b=model_b, source_id=key,
            metadata={"idx": idx, "motivation_app": rec.text("motivation_app", optional=True)},
        )
        votes = [to_choice(rec, f"annotator{k}", rec.require(f"annotator{k}"), PANDALM) for k in (1, 2, 3)]
        for judge, vote in zip(annotators, votes):
            b.label(s, judge, vote, source="pandalm:annotator")
        if None not in votes:
            top, n = Counter(votes).most_common(1)[0]
            prob_a = (votes.count("A") + 0.5 * votes.count("tie")) / 3
            b.label(s, majority, top if n >= 2 else "tie", prob_a=prob_a, source="pandalm:majority")
        for judge, (aux_path, results) in llm_results:
            if key not in results:
                raise InputError(aux_path, f"has no row with idx {key!r} (row {rec.n} of {path.name})", field="idx")
            if results[key] is None:
                b.counts[f"unparsable:{judge}"] += 1
            b.label(s, judge, results[key], source=f"pandalm:{aux_path.name}")
    return b.finish()


def _by_idx(path: Path, key: str, vocab: Vocab) -> tuple[Path, dict[str, str | None]]:
    out: dict[str, str | None] = {}
    rows: dict[str, int | None] = {}
    for rec in _records(path):
        idx = str(rec.require("idx"))
        if idx in out:
            raise rec.error("idx", f"duplicate idx {idx!r} (also in row {rows[idx]})")
        rows[idx] = rec.n
        out[idx] = to_choice(rec, key, rec.require(key), vocab)
    return path, out


# ---------------------------------------------------------------------------- alpaca_eval

_ALPACA_DISCRETE = {1.0: "A", 1.5: "tie", 2.0: "B"}


def parse_alpaca_eval(path: Any, *, dataset: str | None = None, judge: str | None = None) -> ParsedFile:
    """One AlpacaEval ``annotations.json``: output_1 (the baseline) is A, output_2 is B.

    The judge is each row's ``annotator`` (or ``judge``). ``preference``: 1 -> A, 2 -> B, 1.5 -> tie;
    other values in [1, 2] (weighted annotators) give P(A) = 2 - preference; 0 (identical outputs)
    and null (a failed annotation) give no label and are counted. The default dataset is
    ``alpaca_eval-<generator_2>``, so the annotator files of one model share their samples.
    """
    path = Path(path)
    rows = list(_records(path))
    if dataset is None:
        generators = sorted({rec.text("generator_2") for rec in rows})
        if len(generators) != 1:
            raise InputError(path, f"rows name {len(generators)} generator_2 models ({', '.join(generators[:5])}); pass dataset=",
                             field="generator_2")
        dataset = f"alpaca_eval-{generators[0]}"
    b = _Builder(Dataset(dataset, source=f"tatsu-lab/alpaca_eval annotations ({path.parent.name})", licence="CC BY-NC 4.0",
                         description="AlpacaEval instructions; A is the baseline (output_1), B the evaluated model."), path)
    for rec in rows:
        a, bb = rec.text("output_1", allow_empty=True), rec.text("output_2", allow_empty=True)
        pref = rec.number("preference")
        identical = pref == 0 or a == bb
        metadata = {"source_dataset": rec.text("dataset", optional=True)}
        if identical:
            metadata["identical_outputs"] = True
        s = b.sample(rec.text("instruction"), a, bb, model_a=rec.text("generator_1"), model_b=rec.text("generator_2"),
                     metadata={k: v for k, v in metadata.items() if v is not None})
        name = judge or rec.text("annotator")
        b.judge(name, "llm", notes="AlpacaEval annotator configuration")
        if pref is None:
            b.counts["failed"] += 1
        elif pref == 0:
            b.counts["identical_outputs"] += 1
        elif 1.0 <= pref <= 2.0:
            discrete = _ALPACA_DISCRETE.get(pref)
            b.label(s, name, discrete, prob_a=None if discrete else 2.0 - pref, source="alpaca_eval:preference")
        else:
            raise rec.error("preference", f"must be 1, 2, 1.5, a value in [1, 2], 0 or null, not {_show(rec.get('preference'))}")
    return b.finish()


# ---------------------------------------------------------------------------- hf (the paper's dataset)

#: The 33 judges of the paper's dataset; sizes in billions of parameters (None: not public / a person).
PAPER_JUDGES = (
    "human", "gpt-4-1106-preview", "gpt-3.5-turbo-1106",
    "llama-2-7b", "llama-2-7b-chat", "llama-2-13b", "llama-2-13b-chat", "llama-2-70b", "llama-2-70b-chat",
    "mistral-7b", "mistral-7b-instruct-v0.1", "mistral-7b-instruct-v0.2", "mistral-8x7b", "mistral-8x7b-instruct-v0.1",
    "qwen-7b", "qwen-7b-chat", "qwen-14b", "qwen-14b-chat", "qwen-72b", "qwen-72b-chat",
    "tulu-2-dpo-7b", "tulu-2-dpo-13b", "tulu-2-dpo-70b", "vicuna-7b-v1.5", "vicuna-13b-v1.5",
    "wizardLM-13b-v1.2", "wizardLM-70b-v1.0", "yi-6b", "yi-6b-chat", "yi-34b", "yi-34b-chat",
    "zephyr-7b-alpha", "zephyr-7b-beta",
)


def judge_size_b(name: str) -> float | None:
    """Parameters in billions read from a model name: "qwen-72b-chat" -> 72, "mistral-8x7b" -> 56.

    None for a person and for the proprietary GPT models, whose sizes are not public.
    """
    n = name.lower()
    if n in ("human", "arena-human") or n.startswith("gpt-"):
        return None
    moe = re.search(r"(\d+)x(\d+(?:\.\d+)?)b\b", n)
    if moe:
        return float(moe.group(1)) * float(moe.group(2))
    m = re.search(r"(\d+(?:\.\d+)?)b\b", n)
    return float(m.group(1)) if m else None


PAPER_JUDGE_SIZES = {name: judge_size_b(name) for name in PAPER_JUDGES}

#: The paper's property names (the HF dataset's ``basic_response_N`` / ``query-specific_response_N``
#: keys) -> our attribute keys (the negated "non_repetitive" is annotated as "repetitive").
PAPER_PROPERTIES = {
    "harmlessness": "harmless",
    "grammar, spelling, punctuation, and code-switching": "grammar",
    "friendly": "friendly",
    "polite": "polite",
    "interactive": "interactive",
    "authoritative tone": "authoritative",
    "funny and humorous": "funny",
    "metaphors, personification, similes, hyperboles, irony, parallelism": "rhetorical",
    "complex word usage and sentence structure": "complex_language",
    "use of direct and explicit supporting materials": "supporting_materials",
    "well formatted": "well_formatted",
    "admit limitations or mistakes": "admits_limits",
    "persuade user": "persuasive",
    "step by step solution": "step_by_step",
    "use of informal expressions": "informal",
    "repetitive": "repetitive",
    "clear and understandable": "clear",
    "relevance without considering inaccuracy": "relevant",
    "innovative and novel": "novel",
    "information richness without considering inaccuracy": "rich_info",
}
PAPER_QUERY_SPECIFIC = {
    "clarify user intent": "clarifies_intent",
    "showing empathetic": "empathetic",
    "satisfying explicit constraints": "satisfies_constraints",
    "supporting explicit subjective stances": "supports_stances",
    "correcting explicit mistakes or biases": "corrects_mistakes",
}
#: Verbal ratings of the query-specific annotations (stances -2..2, mistakes 0..3).
PAPER_VERBAL_SCORES = {
    "strongly supported": 2, "weakly supported": 1, "neutral": 0, "weakly opposed": -1, "strongly opposed": -2,
    "pointed out and corrected": 3, "corrected without being pointed out": 2,
    "pointed out but not corrected": 1, "neither pointed out nor corrected": 0,
}
_YES_NO = {"yes": True, "no": False}
_APPLICABLE = {"applicable": True, "yes": True, "true": True,
               "not applicable": False, "no": False, "false": False, "cannot be checked": False}
_HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+")


def load_hf(name_or_path: Any, *, revision: str | None = None, cache_dir: Any = None) -> list[Path]:
    """The local data files of an HF dataset: a local .parquet/.jsonl/.json file or folder, or a hub
    dataset name ("GAIR/preference-dissection") fetched with ``huggingface_hub.snapshot_download``.

    Gated datasets need the conditions accepted on the hub and a token (``HF_TOKEN``). Without
    network (or with ``HF_HUB_OFFLINE=1`` and nothing cached) this raises InputError at once.
    """
    p = Path(name_or_path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        name = str(name_or_path)
        if not _HUB_NAME.fullmatch(name) or p.suffix.lower() in _KINDS:
            raise InputError(p, "no such file, and not a hub dataset name like 'GAIR/preference-dissection'")
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise InputError(name, "huggingface-hub is not installed (pip install huggingface-hub)") from None
        try:
            p = Path(snapshot_download(repo_id=name, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                                       allow_patterns=["*.parquet", "*.jsonl"]))
        except Exception as e:  # the hub client's errors vary by cause; the message says which
            detail = (str(e).strip().splitlines() or [""])[0][:200]
            raise InputError(name, f"cannot fetch the dataset from the Hugging Face hub ({type(e).__name__}: {detail}); "
                                   "check the network, accept the dataset's conditions on the hub and set HF_TOKEN, "
                                   "or pass a local .parquet/.jsonl file") from None
    for pattern in ("*.parquet", "*.jsonl", "*.json"):
        files = sorted(f for f in p.rglob(pattern) if f.is_file() and not f.name.startswith("."))
        if files:
            return files
    raise InputError(p, "no .parquet, .jsonl or .json data file in this folder")


def parse_hf(path: Any, *, dataset: str = "preference-dissection", revision: str | None = None,
             cache_dir: Any = None) -> ParsedFile:
    """The paper's dataset layout (HF ``GAIR/preference-dissection``), from a local file or the hub.

    Samples with scenario, query-case flags and the GPT-4-Turbo reference; one label per judge in
    ``preference_labels`` (``human`` becomes ``arena-human``); and, where the per-response
    annotations are present, the 29 comparison features under the source ``hf:paper``.
    """
    files = load_hf(path, revision=revision, cache_dir=cache_dir)
    name = str(path)
    b = _Builder(Dataset(dataset, source=f"GAIR/preference-dissection ({Path(name).name})", licence="CC-BY-NC-4.0",
                         description="5,240 Chatbot Arena pairs with the paper's property annotations and 33 judges."),
                 files[0])
    for file in files:
        for rec in _records(file):
            _hf_row(b, rec, file)
    return b.finish()


def _hf_row(b: _Builder, rec: _Row, file: Path) -> None:
    r1, r2 = rec.sub("response_1"), rec.sub("response_2")
    scenario = rec.text("scenario_auto-j", optional=True)
    group = rec.text("scenario_group", optional=True)
    cases = _paper_cases(rec)
    lists = {k: rec.get(k) for k in ("explicit constraints", "explicit subjective stances", "explicit mistakes or biases")}
    s = b.sample(
        rec.text("query"), r1.text("content", allow_empty=True), r2.text("content", allow_empty=True),
        model_a=r1.text("model", optional=True, scalars=True), model_b=r2.text("model", optional=True, scalars=True),
        reference=rec.text("gpt-4-turbo_reference", optional=True, allow_empty=True),
        scenario=scenario, scenario_group=catalogue.group_for_scenario(group) or catalogue.group_for_scenario(scenario),
        cases=cases, metadata={"query_analysis": {k: v for k, v in lists.items() if v}} if any(lists.values()) else {},
    )
    labels = rec.sub("preference_labels", optional=True)
    for judge_name, value in (labels.data.items() if labels else ()):
        choice = to_choice(labels, judge_name, value, HF_LABELS)
        if judge_name == "human":
            judge = b.judge("arena-human", "human", notes="Chatbot Arena users' votes (the paper's human judge)")
        else:
            judge = b.judge(judge_name, "llm", size_b=PAPER_JUDGE_SIZES.get(judge_name, judge_size_b(judge_name)),
                            notes="preference label from the paper's dataset")
        b.label(s, judge, choice, source="hf:preference_labels")
    if rec.get("basic_response_1") is None and rec.get("basic_response_2") is None:
        return
    sides = [_paper_ratings(rec, side, resp) for side, resp in ((1, r1), (2, r2))]
    checkable = all(applicable is not False for _, applicable in sides)
    b.features(features.resolve(s.id, "hf:paper", sides[0][0], sides[1][0], cases=cases, checkable=checkable,
                                provenance={"file": file.name, "row": rec.n}))


def _paper_cases(rec: _Row) -> dict[str, bool]:
    cases: dict[str, bool] = {}
    for key, column, want in (("intent_unclear", "clear intent", False), ("express_feeling", "explicitly express feelings", True)):
        value = rec.get(column)
        if value is None:
            continue
        yes = value if isinstance(value, bool) else _YES_NO.get(str(value).strip().lower())
        if yes is None:
            raise rec.error(column, f"must be 'Yes' or 'No', not {_show(value)}")
        cases[key] = yes is want
    for key, column in (("w_constraints", "explicit constraints"), ("w_stances", "explicit subjective stances"),
                        ("w_mistakes", "explicit mistakes or biases")):
        value = rec.get(column)
        if value is None:
            continue
        if not isinstance(value, list):
            raise rec.error(column, f"must be a list, not {_type(value)}")
        cases[key] = len(value) > 0
    return cases


def _paper_ratings(rec: _Row, side: int, response: _Row) -> tuple[dict[str, Any], bool | None]:
    """Raw per-response values keyed by attribute key, and whether errors could be checked."""
    out: dict[str, Any] = {}
    basic = rec.sub(f"basic_response_{side}")
    for name, key in PAPER_PROPERTIES.items():
        out[key] = basic.number(name)
    specific = rec.sub(f"query-specific_response_{side}", optional=True)
    for name, key in PAPER_QUERY_SPECIFIC.items():
        out[key] = _verbal_score(specific, name) if specific else None
    applicable = None
    errors = rec.sub(f"errors_response_{side}", optional=True)
    if errors:
        flag = next((errors.get(k) for k in ("applicable or not", "accuracy check", "applicable to detect errors")
                     if errors.get(k) is not None), None)
        if flag is not None:
            applicable = flag if isinstance(flag, bool) else _APPLICABLE.get(str(flag).strip().lower())
            if applicable is None:
                raise errors.error("applicable or not", f"must say 'applicable' or 'not applicable', not {_show(flag)}")
        key = next((k for k in ("errors", "inaccuracies", "detected errors") if errors.get(k) is not None), "errors")
        found = errors.get(key) or []
        if not isinstance(found, list) or not all(isinstance(e, Mapping) and isinstance(e.get("severity"), str) for e in found):
            raise errors.error(key, "must be a list of objects, each with a 'severity' (minor, moderate, severe)")
        out["errors"] = found
    words = response.get("num_words")
    out["lengthy"] = words if isinstance(words, int) and not isinstance(words, bool) else word_count(response.get("content"))
    return out, applicable


def _verbal_score(rec: _Row, key: str) -> float | None:
    """A query-specific rating: a number, a verbal label, "item: label", or a list / object of them (mean)."""

    def score(v: Any) -> float | None:
        if v is None:
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, (list, tuple, Mapping)):
            values = [x for x in map(score, v.values() if isinstance(v, Mapping) else v) if x is not None]
            return sum(values) / len(values) if values else None
        if isinstance(v, str):
            s = v.strip().lower()
            if s in PAPER_VERBAL_SCORES:
                return float(PAPER_VERBAL_SCORES[s])
            try:
                return float(s)
            except ValueError:
                if ":" in s:
                    return score(s.rsplit(":", 1)[1])
        raise ValueError(v)

    try:
        return score(rec.get(key))
    except ValueError as e:
        raise rec.error(key, f"cannot read a rating from {_show(e.args[0])}") from None


# ---------------------------------------------------------------------------- arena


def parse_arena(path: Any, *, dataset: str = "chatbot-arena") -> ParsedFile:
    """Chatbot Arena conversations (``lmsys/chatbot_arena_conversations``) or the paper's raw rows.

    Multi-turn conversations: the query is the user turns, each response the side's assistant
    turns, joined in order; ``turns`` is the number of user turns. Rows flagged by OpenAI
    moderation or the toxic-chat tags go to the Unsafe Queries group; others are classified later.
    The paper's rows (``prompt``, ``response_a``, ``response_b``...) bring scenario, group and reference.
    """
    path = Path(path)
    b = _Builder(Dataset(dataset, source=f"Chatbot Arena conversations ({path.name})",
                         description="Real user conversations with two anonymous models and the user's vote."), path)
    crowd = b.judge("arena-crowd", "human", notes="Chatbot Arena users' votes")
    for rec in _records(path):
        if rec.has("conversation_a"):
            s = _arena_conversation(b, rec)
        elif rec.has("prompt") or rec.has("response_a"):
            s = _arena_paper_row(b, rec)
        else:
            raise rec.error("conversation_a", "missing: expected Chatbot Arena fields (conversation_a, conversation_b) "
                                              "or the paper's (prompt, response_a, response_b)")
        winner = rec.require("winner")
        b.label(s, crowd, to_choice(rec, "winner", winner, ARENA_WINNER), source=f"arena:{winner}")
    return b.finish()


def _turns(rec: _Row, key: str) -> tuple[list[str], list[str]]:
    conv = rec.require(key)
    if not isinstance(conv, list) or not conv:
        raise rec.error(key, f"must be a non-empty list of {{role, content}} turns, not {_type(conv)}")
    users, assistant = [], []
    for i, turn in enumerate(conv):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("content"), str):
            raise rec.error(key, f"turn {i + 1} must be an object with a string 'content'")
        role = str(turn.get("role", "")).lower()
        if role in ("user", "human"):
            users.append(turn["content"])
        elif role in ("assistant", "gpt", "model"):
            assistant.append(turn["content"])
        elif role != "system":
            raise rec.error(key, f"turn {i + 1} has an unknown role {_show(turn.get('role'))} (expected user or assistant)")
    if not users or not assistant:
        raise rec.error(key, "needs at least one user turn and one assistant turn")
    return users, assistant


def _joined(speaker: str, texts: list[str]) -> str:
    return texts[0] if len(texts) == 1 else "\n\n".join(f"[{speaker}, turn {i}]\n{t}" for i, t in enumerate(texts, 1))


def _arena_conversation(b: _Builder, rec: _Row) -> Sample:
    users, a = _turns(rec, "conversation_a")
    users_b, bb = _turns(rec, "conversation_b")
    if users_b != users:
        raise rec.error("conversation_b", "its user turns differ from conversation_a's")
    if not users[-1].strip():
        raise rec.error("conversation_a", "the user's query is empty")
    moderation = rec.get("openai_moderation")
    flagged = bool(moderation.get("flagged")) if isinstance(moderation, Mapping) else None
    tags = rec.get("toxic_chat_tag")
    toxic = any(isinstance(v, Mapping) and v.get("flagged") for v in tags.values()) if isinstance(tags, Mapping) else None
    metadata = {"language": rec.get("language"), "voter": rec.get("judge"), "anony": rec.get("anony"),
                "moderation_flagged": flagged, "toxic": toxic}
    qid = rec.get("question_id")
    return b.sample(
        _joined("User", users), _joined("Assistant", a), _joined("Assistant", bb),
        model_a=rec.text("model_a"), model_b=rec.text("model_b"), turns=len(users),
        scenario_group="Unsafe Queries" if flagged or toxic else None,
        source_id=None if qid is None else str(qid),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def _arena_paper_row(b: _Builder, rec: _Row) -> Sample:
    scenario = rec.text("scenario", optional=True)
    group = rec.text("group", optional=True)
    rid = rec.get("id")
    tags = {k: rec.get(k) for k in ("oaimoderation_tag", "toxic_chat_tag") if rec.get(k)}
    return b.sample(
        rec.text("prompt"), rec.text("response_a", allow_empty=True), rec.text("response_b", allow_empty=True),
        model_a=rec.text("model_a"), model_b=rec.text("model_b"), scenario=scenario,
        scenario_group=catalogue.group_for_scenario(group) or catalogue.group_for_scenario(scenario),
        reference=rec.text("gpt4_ref_output", optional=True, allow_empty=True),
        source_id=None if rid is None else str(rid), metadata=tags,
    )


# ---------------------------------------------------------------------------- generic

GENERIC_COLUMNS = ("query", "response_a", "response_b", "label", "prob_a", "id", "model_a", "model_b",
                   "scenario", "scenario_group", "reference", "chosen", "rejected")
PAIR_MODES = ("ab", "chosen_rejected")


def parse_generic(path: Any, *, dataset: str | None = None, columns: Mapping[str, str] | None = None,
                  judge: str = "human", judge_kind: str = "human", label_values: Any = None,
                  pairs: str = "ab", seed: Any = 0, allow_empty: Any = False) -> ParsedFile:
    """Any CSV / TSV / JSONL / JSON list / parquet of pairs.

    ``columns`` maps our names (GENERIC_COLUMNS) to the file's column names; unmapped ones use
    our names and are optional except the query and the two responses. Labels: A/B/tie in any
    case, or other spellings through ``label_values`` ({"1": "A", "2": "B", "0": "tie"} or
    "1=A,2=B,0=tie"); or a ``prob_a`` column (P(A), the choice follows from it). ``pairs=
    "chosen_rejected"`` reads ``chosen`` / ``rejected`` columns and puts the chosen response at A
    or B by a coin seeded with ``seed`` and the pair's content, recorded in the sample metadata,
    with the label on the chosen side. An ``id`` column must be unique. The default dataset name
    is the file's stem.
    """
    path = Path(path)
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(GENERIC_COLUMNS))
    if unknown:
        raise InputError(path, f"unknown column key(s) {', '.join(map(repr, unknown))} (known: {', '.join(GENERIC_COLUMNS)})",
                         field="columns")
    col = {name: columns.get(name, name) for name in GENERIC_COLUMNS}
    if pairs not in PAIR_MODES:
        raise InputError(path, f"pairs must be one of {', '.join(PAIR_MODES)}, not {_show(pairs)}", field="pairs")
    if judge_kind not in JUDGE_KINDS:
        raise InputError(path, f"judge_kind must be one of {', '.join(JUDGE_KINDS)}, not {_show(judge_kind)}", field="judge_kind")
    if not isinstance(judge, str) or not judge.strip():
        raise InputError(path, "the judge name must be a non-empty string", field="judge")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise InputError(path, f"seed must be an integer, not {_show(seed)}", field="seed") from None
    allow_empty = str(allow_empty).strip().lower() in ("1", "true", "yes")
    vocab = _vocab_option(path, label_values)
    b = _Builder(Dataset(dataset or path.stem, source=f"imported from {path.name}"), path)
    b.judge(judge, judge_kind, notes=f"labels imported from {path.name}")

    def optional(rec: _Row, name: str, *, text: bool = False) -> Any:
        """An optional column: None when absent, but a column the caller mapped must exist."""
        if name in columns:
            rec.require(col[name])
        return rec.text(col[name], optional=True, scalars=True) if text else rec.get(col[name])

    first_row_of: dict[str, int | None] = {}
    for rec in _records(path):
        query = rec.text(col["query"])
        metadata: dict[str, Any] = {}
        if pairs == "chosen_rejected":
            chosen = rec.text(col["chosen"], allow_empty=allow_empty)
            rejected = rec.text(col["rejected"], allow_empty=allow_empty)
            choice = _coin(seed, query, chosen, rejected)
            a, bb = (chosen, rejected) if choice == "A" else (rejected, chosen)
            metadata = {"ab_seed": seed, "chosen": choice}
            prob_a = None
        else:
            a = rec.text(col["response_a"], allow_empty=allow_empty)
            bb = rec.text(col["response_b"], allow_empty=allow_empty)
            choice = to_choice(rec, col["label"], optional(rec, "label"), vocab)
            optional(rec, "prob_a")
            prob_a = _probability(rec, col["prob_a"])
        source_id = optional(rec, "id")
        if source_id is not None:
            if isinstance(source_id, (dict, list, bool, float)):
                raise rec.error(col["id"], f"must be a string or an integer, not {_type(source_id)}")
            source_id = str(source_id)
            if source_id in first_row_of:
                raise rec.error(col["id"], f"duplicate id {source_id!r} (also in row {first_row_of[source_id]})")
            first_row_of[source_id] = rec.n
        text = {name: optional(rec, name, text=True) for name in ("model_a", "model_b", "scenario", "scenario_group", "reference")}
        group = text["scenario_group"]
        if group is not None and catalogue.group_for_scenario(group) is None:
            raise rec.error(col["scenario_group"], f"unknown scenario group {_show(group)} (expected one of {', '.join(catalogue.group_keys())})")
        s = b.sample(query, a, bb, model_a=text["model_a"], model_b=text["model_b"], reference=text["reference"],
                     scenario=text["scenario"],
                     scenario_group=catalogue.group_for_scenario(group) or catalogue.group_for_scenario(text["scenario"]),
                     source_id=source_id, metadata=metadata)
        b.label(s, judge, choice, prob_a=prob_a, source=f"generic:{path.name}")
    return b.finish()


def _coin(seed: int, query: str, chosen: str, rejected: str) -> str:
    """Where the chosen response goes: a fair coin from the seed and the pair, stable across runs and row order."""
    h = hashlib.sha256()
    for part in (str(seed), query, chosen, rejected):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return "A" if h.digest()[0] & 1 else "B"


# ---------------------------------------------------------------------------- entry points

FORMATS: dict[str, Callable[..., ParsedFile]] = {
    "autoj": parse_autoj,
    "pandalm": parse_pandalm,
    "alpaca_eval": parse_alpaca_eval,
    "hf": parse_hf,
    "arena": parse_arena,
    "generic": parse_generic,
}


def parse_file(fmt: str, path: Any, **options: Any) -> ParsedFile:
    """Parse and validate ``path`` in format ``fmt`` without touching any store."""
    parser = FORMATS.get(fmt)
    if parser is None:
        raise InputError(path, f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    accepted = [p for p in inspect.signature(parser).parameters if p != "path"]
    for key in options:
        if key not in accepted:
            raise InputError(path, f"unknown option {key!r} for format {fmt!r} (accepted: {', '.join(accepted)})", field=key)
    return parser(path, **options)


def import_file(store, fmt: str, path: Any, **options: Any) -> ImportReport:
    """Parse ``path`` in format ``fmt``, validate everything, then write it in one transaction."""
    batch = parse_file(fmt, path, **options)
    result = store.write_batch(batch)
    return ImportReport(**vars(result), counts=dict(batch.counts))


def import_labels(store, path: Any, *, dataset: str, judge: str, kind: str = "llm", notes: str = "") -> int:
    """Labels of one judge for samples already stored; returns the number of labels written.

    Two layouts: the paper's upload format, a JSON list of "A" / "B" (or "tie"; null = no label)
    with one entry per sample in the dataset's order (``store.sample_ids(dataset)``); or a
    table (CSV, JSONL, JSON list of objects, parquet) with ``sample_id``, ``label`` and an
    optional ``prob_a`` column.
    """
    path = Path(path)
    if kind not in JUDGE_KINDS:
        raise InputError(path, f"kind must be one of {', '.join(JUDGE_KINDS)}, not {_show(kind)}", field="kind")
    if not isinstance(judge, str) or not judge.strip():
        raise InputError(path, "the judge name must be a non-empty string", field="judge")
    ids = store.sample_ids(dataset)
    if not ids:
        raise InputError(path, f"dataset {dataset!r} has no samples in the store; import the samples first")
    source = f"upload:{path.name}"
    data = None
    if path.suffix.lower() == ".json" and _first_byte(_checked_path(path)) == b"[":
        data = load_json(path)
    if data is not None and (not data or not isinstance(data[0], Mapping)):
        if len(data) != len(ids):
            raise InputError(path, f"{len(data)} labels for the {len(ids)} samples of dataset {dataset!r}: "
                                   "the list needs one label per sample, in the dataset's order")
        labels = []
        for n, (sid, value) in enumerate(zip(ids, data), 1):
            choice = to_choice(_Row(path, n, {}), "label", value, AB_TIE)
            if choice is not None:
                labels.append(Label(sid, judge, choice, source=source))
    else:
        rows = (_Row(path, n, obj) for n, obj in enumerate(data, 1)) if data is not None else _records(path)
        labels = _label_table(rows, set(ids), dataset, judge, source)
    return store.write_labels([Judge(judge, kind, notes=notes)], labels)


def _label_table(rows, known: set[str], dataset: str, judge: str, source: str) -> list[Label]:
    labels, first_row_of = [], {}
    for rec in rows:
        if not isinstance(rec.data, Mapping):
            raise rec.error(None, f"expected an object, found {_type(rec.data)}")
        sid = rec.text("sample_id")
        if sid not in known:
            raise rec.error("sample_id", f"unknown sample id {sid!r}: not a sample of dataset {dataset!r}")
        if sid in first_row_of:
            raise rec.error("sample_id", f"duplicate sample id {sid!r} (also in row {first_row_of[sid]})")
        first_row_of[sid] = rec.n
        choice = to_choice(rec, "label", rec.require("label"), AB_TIE)
        prob_a = _probability(rec, "prob_a")
        if choice is None and prob_a is None:
            continue
        labels.append(Label(sid, judge, choice or choice_from_prob(prob_a), prob_a, source=source))
    return labels
