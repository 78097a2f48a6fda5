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

import contextvars
import csv
import hashlib
import inspect
import itertools
import json
import math
import re
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import catalogue, features
from .featureset import HF_PAPER
from .records import (
    CHOICES,
    JUDGE_KINDS,
    Dataset,
    Feature,
    ImportBatch,
    ImportResult,
    Judge,
    Label,
    NameError_,
    Sample,
    choice_from_prob,
    combine_verdicts,
    normalise_name,
    size_from_name,
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


#: how many problems a rejected file lists before it only counts the rest
MAX_PROBLEMS = 50


class InputErrors(InputError):
    """Every problem found in one file (the first ``MAX_PROBLEMS``; ``more`` counts the rest),
    each an InputError naming its file, row and field. ``str()`` is one line; ``lines()`` one per
    problem, for a terminal or a page."""

    def __init__(self, file: Any, problems: list[InputError], more: int = 0):
        self.problems, self.more = list(problems), more
        total = len(self.problems) + more
        listed = "; ".join(_row_field(p) + p.message for p in self.problems)
        tail = f"; and {more:,} more" if more else ""
        super().__init__(file, f"{total:,} problems: {listed}{tail}")
        self.row, self.field = self.problems[0].row, self.problems[0].field  # the first problem's place

    def lines(self) -> list[str]:
        head = f"{Path(self.file).name if self.file else 'input'}: {len(self.problems) + self.more:,} problems"
        return [head] + [f"  {p}" for p in self.problems] + ([f"  ... and {self.more:,} more"] if self.more else [])


def _row_field(e: InputError) -> str:
    parts = ([f"row {e.row}"] if e.row is not None else []) + ([f"field {e.field!r}"] if e.field is not None else [])
    return ", ".join(parts) + ": " if parts else ""


class Problems:
    """Collects a file's problems so that one rejection lists them all (up to ``cap``, then a count)."""

    def __init__(self, file: Any, cap: int = MAX_PROBLEMS):
        self.file, self.cap, self.items, self.total = file, cap, [], 0

    def add(self, e: InputError) -> None:
        if isinstance(e, InputErrors):
            for p in e.problems:
                self.add(p)
            self.total += e.more
            return
        self.total += 1
        if len(self.items) < self.cap:
            self.items.append(e)

    @contextmanager
    def row(self):
        """Run one row's checks; an InputError is noted and the next row goes on."""
        try:
            yield
        except InputError as e:
            self.add(e)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total == 1:
            raise self.items[0]
        if self.total:
            raise InputErrors(self.file, self.items, self.total - len(self.items))


@dataclass
class ParsedFile(ImportBatch):
    """An ImportBatch plus what the parser counted (rows, repeats, failed or unparsable verdicts...)."""

    counts: Counter = field(default_factory=Counter)
    repeats: list[tuple[int, int]] = field(default_factory=list)  # (row, earlier row of the same pair), first 20


@dataclass
class ImportReport(ImportResult):
    """What ``import_file`` returns: the store's ImportResult plus the parser's counts."""

    counts: dict[str, int] = field(default_factory=dict)
    repeats: list[tuple[int, int]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """What a researcher should know about what got in: repeats, normalised texts, pairs already stored."""
        out = []
        c = self.counts
        if c.get("repeats"):
            shown = ", ".join(f"row {r} = row {f}" for r, f in self.repeats[:5])
            out.append(f"{c['repeats']:,} row(s) repeat an earlier row's pair ({shown}"
                       f"{', ...' if c['repeats'] > 5 else ''}); each is kept as its own sample")
        if c.get("normalised"):
            out.append(f"{c['normalised']:,} row(s) had their text normalised (line endings, byte-order mark, "
                       "trailing spaces, Unicode form) before the pair's id was made")
        known = self.samples_seen - self.samples_added
        if known:
            out.append(f"{known:,} pair(s) were already in the store (the same text once normalised): not added again")
        if c.get("no_verdict"):
            out.append(f"{c['no_verdict']:,} row(s) had no verdict (empty label): no label stored for them")
        return out


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


def read_rows(path: Any, problems: Problems | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row dict) for every data row of a JSONL, JSON-list, CSV/TSV or parquet file.

    The file's existence, type and emptiness are checked at once; row errors surface while
    iterating. Rows stream for JSONL, CSV and parquet, so a large file is never held twice.
    """
    p = Path(path)
    kind = _KINDS.get(p.suffix.lower())
    if kind is None:
        raise InputError(p, f"unsupported file type {p.suffix or '(none)'!r}: expected .jsonl, .json, .csv, .tsv or .parquet")
    p = _checked_path(p)
    if kind == "json" and _first_byte(p) == b"{" and _first_line_is_json(p):
        kind = "jsonl"  # a .json file holding one object per line (else one object of lists of rows)
    if kind == "jsonl":
        return _jsonl_rows(p, problems)
    if kind == "json":
        return _json_rows(p, problems)
    if kind == "parquet":
        return _parquet_rows(p)
    return _csv_rows(p, "\t" if kind == "tsv" else ",", problems)


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dupe = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dupe)
    return d


#: how deeply JSON may nest (objects and lists); real rows nest a few levels
MAX_DEPTH = 64


#: a JSON string, escapes and all (or an unterminated one, to the end of the text)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """Whether a JSON text nests deeper than MAX_DEPTH: the deepest run of brackets outside strings (only
    texts with that many opening brackets are scanned; the strings are cut out by a regular expression and
    the brackets that remain are walked, not every character: 4x faster on a large file)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    return max(itertools.accumulate(1 if b in "[{" else -1 for b in brackets), default=0) > MAX_DEPTH


def parse_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys in an object and nesting deeper than MAX_DEPTH
    (ValueError with a message; JSONDecodeError for bad syntax)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise ValueError(f"duplicate key {_show(e.args[0])} in one object (which value is meant?)") from None
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None


def _parse_json_checked(text: str) -> Any:
    if _too_deep(text):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return parse_json(text)


def _first_line_is_json(path: Path) -> bool:
    """Whether the first non-blank line of the file is a JSON value by itself (JSONL), not the
    start of one document spread over lines."""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip(b" \t\r\n\xef\xbb\xbf"):
                try:
                    json.loads(raw.decode("utf-8-sig", "replace"))
                    return True
                except (ValueError, RecursionError):
                    return False
    return True


def _decode(path: Path, raw: bytes, line: int, *, row: int | None) -> str:
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            path, f"not valid UTF-8: byte {raw[e.start]:#04x} at line {line}, column {e.start + 1}", row=row
        ) from None


def _jsonl_rows(path: Path, problems: Problems | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a JSONL file. With ``problems``, a bad line is noted there and reading goes on."""
    found = False
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = _decode(path, raw, n, row=n)
                if not line.strip():
                    continue
                try:
                    obj = _parse_json_checked(line)
                except json.JSONDecodeError as e:
                    hint = " (a .json file must hold a list of objects, or one object per line)" if path.suffix == ".json" else ""
                    raise InputError(path, f"invalid JSON at line {n}, column {e.colno}: {e.msg}{hint}", row=n) from None
                except ValueError as e:
                    raise InputError(path, str(e), row=n) from None
                if not isinstance(obj, dict):
                    raise InputError(path, f"expected a JSON object, found {_type(obj)}", row=n)
            except InputError as e:
                if problems is None:
                    raise
                problems.add(e)
                found = True
                continue
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
        return _parse_json_checked(text)
    except json.JSONDecodeError as e:
        raise InputError(p, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise InputError(p, str(e)) from None


def _json_rows(path: Path, problems: Problems | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    data = load_json(path)
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        # an object of lists of rows ({"length bias": [...], "concreteness": [...]}): the rows in
        # order, each with the key it was listed under as the field "_key" (usable as a category)
        data = [{"_key": k, **row} if isinstance(row, dict) else row for k, rows in data.items() for row in rows]
    if not isinstance(data, list):
        raise InputError(path, f"expected a JSON list of objects (or an object of such lists), found {_type(data)}")
    if not data:
        raise InputError(path, "no data rows")
    for n, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            e = InputError(path, f"expected a JSON object, found {_type(obj)}", row=n)
            if problems is None:
                raise e
            problems.add(e)
            continue
        yield n, obj


class _LineError(Exception):
    pass


def _csv_rows(path: Path, delimiter: str, problems: Problems | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
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
                    e = InputError(path, f"expected {len(header)} fields as in the header, found {len(values)}", row=n)
                    if problems is None:
                        raise e
                    problems.add(e)
                    continue
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

    def _lookup(self, key: str) -> tuple[bool, Any]:
        """(found, value): a field, or a path into nested objects and lists ("judgments.0.decision")
        when the row has no field of that exact name."""
        data = self.data
        if key in data:
            return True, data[key]
        if "." not in key:
            return False, None
        cur: Any = data
        for part in key.split("."):
            if isinstance(cur, Mapping) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return False, None
        return True, cur

    def has(self, key: str) -> bool:
        return self._lookup(key)[0]

    def get(self, key: str, default: Any = None) -> Any:
        found, value = self._lookup(key)
        if not found:
            return default
        return default if value == "" and default is None else value  # CSV's empty cell is "no value"

    def require(self, key: str) -> Any:
        found, value = self._lookup(key)
        if not found:
            raise self.error(key, "missing (the row has no such field)")
        return value

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
        if "\x00" in value:
            raise self.error(key, f"contains a NUL byte (character {value.index(chr(0)) + 1}): a damaged or binary file?")
        return value

    def name(self, key: str, *, optional: bool = False) -> str | None:
        """A name field (a model, a category): normalised and checked as ``records.normalise_name``."""
        value = self.text(key, optional=optional, scalars=True)
        if value is None:
            return None
        try:
            return normalise_name(value, key)
        except NameError_ as e:
            raise self.error(key, str(e)) from None

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


#: called with the number of rows read so far, every ``ROW_HOOK_EVERY`` rows (an import job's progress)
_ROW_HOOK: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar("row_hook", default=None)
ROW_HOOK_EVERY = 2000


def _records(path: Any, problems: Problems | None = None) -> Iterator[_Row]:
    p = Path(path)
    rows = (_Row(p, n, data) for n, data in read_rows(p, problems))
    hook = _ROW_HOOK.get()
    return rows if hook is None else _counted(rows, hook)


def _counted(rows: Iterator[_Row], hook: Callable[[int], None]) -> Iterator[_Row]:
    n = 0
    for n, rec in enumerate(rows, 1):
        if n % ROW_HOOK_EVERY == 0:
            hook(n)
        yield rec
    hook(n)


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


def _flag(value: Any) -> bool:
    """An on/off option given as a bool or as text ("1", "true", "yes")."""
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


_BRACKETS = re.compile(r"\[\[([^\[\]]{1,20})\]\]")
_STRENGTH = re.compile(r"^\s*([AB])\s*(>>|>|<<|<|=|==)\s*([AB])\s*$", re.I)


def parse_verdict(rec: _Row, key: str, value: Any, vocab: Vocab) -> tuple[str | None, int | None]:
    """A raw verdict -> (A / B / tie, strength): strength 2 for "A>>B", 1 for "A>B", None when the
    verdict does not say. Reads the vocabulary's spellings (``label_values``), the arena-hard
    notation ("A>>B", "A>B", "A=B", "B>A", "B>>A", also "A<B"), and a judge's whole answer that
    ends in a bracketed verdict ("... My final verdict: [[A>>B]]", MT-Bench's "[[A]]"; the last
    one counts). None for an empty value; anything else raises, naming the field."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        found = _BRACKETS.findall(value)
        raw = found[-1].strip() if found else value.strip()
        if not raw:
            return None, None
        k = _label_key(raw)
        if k in vocab.folded:
            return vocab.folded[k], None
        m = _STRENGTH.match(raw)
        if m:
            left, op, right = m.group(1).upper(), m.group(2), m.group(3).upper()
            if op in ("=", "=="):
                if left != right:
                    return "tie", None
            elif left != right:
                winner = left if op.startswith(">") else right
                return winner, 2 if len(op) == 2 else 1
    try:
        return to_choice(rec, key, value, vocab), None
    except InputError:
        raise rec.error(key, f"unknown label value {_show(value)} (expected one of {', '.join(map(str, vocab))}); "
                             "also read: a strength such as A>>B / A>B / A=B / B>A / B>>A, or a text ending in "
                             "[[A>B]]; map other spellings with label_values, e.g. 1=A,2=B,0=tie") from None


_SWAP = {"A": "B", "B": "A", "tie": "tie", None: None}


@dataclass
class OrderVerdict:
    """One presentation order's verdict, in A/B terms (A is the dataset's response A)."""

    verdict: str | None = None
    strength: int | None = None
    prob_a: float | None = None  # from scores: sigmoid of their difference
    scores: tuple[float, float] | None = None  # (score of A, score of B)
    from_label: bool = False  # the verdict was given (not derived from scores)


def _score_pair(rec: _Row, key: str) -> tuple[float, float] | None:
    value = rec.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_json(value)
        except ValueError:
            raise rec.error(key, f"must be a list of two numbers, not {_show(value)}") from None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)):
        raise rec.error(key, f"must be a list of two numbers [first shown, second shown], not {_show(value)}")
    return float(value[0]), float(value[1])


def _scalar_score(rec: _Row, key: str) -> float | None:
    x = rec.number(key)
    if x is not None and not math.isfinite(x):
        raise rec.error(key, f"must be a finite number, not {_show(rec.get(key))}")
    return x


@dataclass(frozen=True)
class VerdictColumns:
    """Where one presentation order's verdict is in a row: a label column (a verdict, maybe with
    its strength), a column holding a list of two scores [first shown, second shown], or two
    columns of scores (the response shown first, the one shown second)."""

    label: str | None = None
    scores: str | None = None
    score_first: str | None = None
    score_second: str | None = None

    def present(self, rec: _Row) -> bool:
        return any(c is not None and rec.get(c) is not None for c in (self.label, self.scores, self.score_first,
                                                                      self.score_second))


def read_order(rec: _Row, cols: VerdictColumns, vocab: Vocab, *, swapped: bool, scale: float = 1.0) -> OrderVerdict:
    """One order's verdict from ``rec``. ``swapped``: the run showed B first, and the row gives
    the verdict in that run's own terms ("A" = the response shown first = our B; scores [B, A]):
    it is mapped back. Scores give P(A) = sigmoid((score A - score B) / scale) and, without a
    label, the verdict (a tie when the scores are equal)."""
    out = OrderVerdict()
    if cols.label is not None:
        out.verdict, out.strength = parse_verdict(rec, cols.label, rec.get(cols.label), vocab)
        out.from_label = out.verdict is not None
    pair = _score_pair(rec, cols.scores) if cols.scores is not None else None
    if pair is None and (cols.score_first is not None or cols.score_second is not None):
        first = _scalar_score(rec, cols.score_first) if cols.score_first else None
        second = _scalar_score(rec, cols.score_second) if cols.score_second else None
        if (first is None) != (second is None):
            missing = cols.score_second if first is not None else cols.score_first
            raise rec.error(missing, "is empty, but the other response has a score: both are needed")
        pair = None if first is None else (first, second)
    if swapped:
        out.verdict = _SWAP[out.verdict]
        pair = None if pair is None else (pair[1], pair[0])
    if pair is not None:
        out.scores = pair
        z = max(-700.0, min(700.0, (pair[0] - pair[1]) / scale))
        out.prob_a = 1.0 / (1.0 + math.exp(-z))
        if out.verdict is None:
            out.verdict = choice_from_prob(out.prob_a)
    return out


def combine_orders(ab: OrderVerdict, ba: OrderVerdict | None, prob_a: float | None = None) -> dict[str, Any] | None:
    """Label fields from the verdicts in one or both orders (None when there is no verdict at all).

    P(A): the given probability, else the mean of the orders' score probabilities, else (both
    orders known) the mean vote (``records.combine_verdicts``). The choice: the combined verdict
    of the orders (a tie when they disagree), else the side P(A) favours. verdict_ab / verdict_ba
    are kept only when the swapped order is given (``ba`` not None); the strength of a single
    verdict goes to strength_ab."""
    both = ba is not None
    orders = [o for o in (ab, ba) if o is not None]
    if not any(o.verdict is not None for o in orders) and prob_a is None:
        return None
    score_probs = [o.prob_a for o in orders if o.prob_a is not None]
    if prob_a is None and score_probs:
        prob_a = sum(score_probs) / len(score_probs)
    combined = combine_verdicts(ab.verdict, ba.verdict if both else None)
    if prob_a is None and both and combined:
        prob_a = combined[1]
    if any(o.from_label for o in orders) and combined:
        choice = combined[0]  # the verdicts as given: a tie when the two orders disagree
    else:
        choice = choice_from_prob(prob_a)
    detail = {}
    if ab.scores is not None:
        detail["scores_ab"] = list(ab.scores)
    if both and ba.scores is not None:
        detail["scores_ba"] = list(ba.scores)
    return {"choice": choice, "prob_a": None if prob_a is None else round(prob_a, 12),
            "verdict_ab": ab.verdict if both else None, "verdict_ba": ba.verdict if both else None,
            "strength_ab": ab.strength, "strength_ba": ba.strength if both else None, "detail": detail}


# ---------------------------------------------------------------------------- building a batch


class _Builder:
    """Collects samples, judges and labels of one file; numbers exact repeats of a pair."""

    def __init__(self, dataset: Dataset, file: Path):
        if not isinstance(dataset.name, str) or not dataset.name.strip():
            raise InputError(file, "the dataset name must be a non-empty string", field="dataset")
        dataset.name = _checked_name(file, dataset.name, "dataset")
        self.batch = ParsedFile(dataset=dataset, source_file=str(file))
        self.counts = self.batch.counts
        self._judges: dict[str, Judge] = {}
        self._used: set[str] = set()
        self._seen: Counter = Counter()
        self._first: dict[tuple[str, str, str], int] = {}  # a pair -> the row it first came in
        self.repeats: list[tuple[int, int]] = []  # (row, the earlier row it repeats), the first 20

    def judge(self, name: str, kind: str, *, size_b: float | None = None, notes: str = "") -> str:
        name = _checked_name(self.batch.source_file, name, "judge")
        if name not in self._judges:
            self._judges[name] = Judge(name, kind, notes=notes, size_b=size_b)
        return name

    def sample(self, query: str, response_a: str, response_b: str, **fields: Any) -> Sample:
        """One row's pair. Texts are normalised (``records.normalise_text``) before the content id
        is made; a pair equal to an earlier row's once normalised is a repeat: kept as its own
        sample (occurrence 1, 2, ...), counted, and its row and the first row noted for the report."""
        self.counts["rows"] += 1
        row = self.counts["rows"]
        if not response_a.strip() or not response_b.strip():
            self.counts["empty_responses"] += 1
        for side in ("model_a", "model_b"):
            if fields.get(side) is not None:
                fields[side] = _checked_name(self.batch.source_file, fields[side], side, row=row)
        s = Sample(self.batch.dataset.name, query, response_a, response_b, **fields)
        key = (s.query, s.response_a, s.response_b)
        if key != (query, response_a, response_b):
            self.counts["normalised"] += 1
        occurrence = self._seen[key]
        self._seen[key] = occurrence + 1
        if occurrence:
            self.counts["repeats"] += 1
            if len(self.repeats) < 20:
                self.repeats.append((row, self._first[key]))
            s = Sample(self.batch.dataset.name, s.query, s.response_a, s.response_b, occurrence=occurrence, **fields)
        else:
            self._first[key] = row
        self.batch.samples.append(s)
        return s

    def label(self, sample: Sample, judge: str, choice: str | None, *, prob_a: float | None = None,
              verdict_ab: str | None = None, verdict_ba: str | None = None, source: str = "",
              strength_ab: int | None = None, strength_ba: int | None = None, detail: dict | None = None) -> None:
        """One label; nothing when there is neither a choice nor a probability."""
        if choice is None:
            if prob_a is None:
                return
            choice = choice_from_prob(prob_a)
        self._used.add(judge)
        self.batch.labels.append(Label(sample.id, judge, choice, prob_a, verdict_ab, verdict_ba, source,
                                       strength_ab, strength_ba, detail or {}))

    def features(self, items: list[Feature]) -> None:
        self.batch.features.extend(items)

    def finish(self) -> ParsedFile:
        self.batch.repeats = self.repeats
        if not self.batch.samples:
            raise InputError(self.batch.source_file, "no data rows")
        self.batch.judges = [j for name, j in self._judges.items() if name in self._used]
        return self.batch


def _checked_name(file: Any, value: Any, what: str, *, row: int | None = None) -> str:
    """``records.normalise_name`` with an InputError naming the file (and row) on refusal."""
    try:
        return normalise_name(value, what)
    except NameError_ as e:
        raise InputError(file, str(e), row=row, field=what) from None


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
    problems = Problems(path)
    for i, rec in enumerate(_records(path, problems)):
        try:
            scenario = rec.text("scenario")
            s = b.sample(rec.text("prompt"), rec.text("response 1", allow_empty=True), rec.text("response 2", allow_empty=True),
                         scenario=scenario, scenario_group=catalogue.group_for_scenario(scenario))
            b.label(s, human, to_choice(rec, "label", rec.require("label"), AUTOJ), source="autoj:label")
            ab, ba = (orders[o][1][i] if o in orders and i < len(orders[o][1]) else None for o in ("ab", "ba"))
            combined = combine_verdicts(ab, ba)
            if combined:
                b.label(s, autoj, combined[0], prob_a=combined[1], verdict_ab=ab, verdict_ba=ba, source="autoj:outputs")
        except InputError as e:  # noted; the next row goes on, so one rejection lists every problem
            problems.add(e)
    problems.raise_if_any()
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
    problems = Problems(path)
    for rec in _records(path, problems):
        try:
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
        except InputError as e:  # noted; the next row goes on, so one rejection lists every problem
            problems.add(e)
    problems.raise_if_any()
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
    problems = Problems(path)
    for rec in rows:
        try:
            a, bb = rec.text("output_1", allow_empty=True), rec.text("output_2", allow_empty=True)
            pref = rec.number("preference")
            identical = pref == 0 or a == bb
            metadata = {"source_dataset": rec.text("dataset", optional=True)}
            if identical:
                metadata["identical_outputs"] = True
            s = b.sample(rec.text("instruction"), a, bb, model_a=rec.text("generator_1"), model_b=rec.text("generator_2"),
                         metadata={k: v for k, v in metadata.items() if v is not None})
            name = b.judge(judge or rec.text("annotator"), "llm", notes="AlpacaEval annotator configuration")
            if pref is None:
                b.counts["failed"] += 1
            elif pref == 0:
                b.counts["identical_outputs"] += 1
            elif 1.0 <= pref <= 2.0:
                discrete = _ALPACA_DISCRETE.get(pref)
                b.label(s, name, discrete, prob_a=None if discrete else 2.0 - pref, source="alpaca_eval:preference")
            else:
                raise rec.error("preference", f"must be 1, 2, 1.5, a value in [1, 2], 0 or null, not {_show(rec.get('preference'))}")
        except InputError as e:  # noted; the next row goes on, so one rejection lists every problem
            problems.add(e)
    problems.raise_if_any()
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


PAPER_JUDGE_SIZES = {name: size_from_name(name) for name in PAPER_JUDGES}

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
    problems = Problems(files[0])
    for file in files:
        for rec in _records(file, problems):
            try:
                _hf_row(b, rec, file)
            except InputError as e:  # noted; the next row goes on, so one rejection lists every problem
                problems.add(e)
    problems.raise_if_any()
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
            judge = b.judge(judge_name, "llm", size_b=PAPER_JUDGE_SIZES.get(judge_name, size_from_name(judge_name)),
                            notes="preference label from the paper's dataset")
        b.label(s, judge, choice, source="hf:preference_labels")
    if rec.get("basic_response_1") is None and rec.get("basic_response_2") is None:
        return
    sides = [_paper_ratings(rec, side, resp) for side, resp in ((1, r1), (2, r2))]
    checkable = all(applicable is not False for _, applicable in sides)
    b.features(features.resolve(s.id, HF_PAPER.name, sides[0][0], sides[1][0], cases=cases, checkable=checkable,
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
    problems = Problems(path)
    for rec in _records(path, problems):
        try:
            if rec.has("conversation_a"):
                s = _arena_conversation(b, rec)
            elif rec.has("prompt") or rec.has("response_a"):
                s = _arena_paper_row(b, rec)
            else:
                raise rec.error("conversation_a", "missing: expected Chatbot Arena fields (conversation_a, conversation_b) "
                                                  "or the paper's (prompt, response_a, response_b)")
            winner = rec.require("winner")
            b.label(s, crowd, to_choice(rec, "winner", winner, ARENA_WINNER), source=f"arena:{winner}")
        except InputError as e:  # noted; the next row goes on, so one rejection lists every problem
            problems.add(e)
    problems.raise_if_any()
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

GENERIC_COLUMNS = ("query", "response_a", "response_b", "label", "label_ba", "prob_a", "scores", "scores_ba",
                   "score_a", "score_b", "id", "model_a", "model_b", "scenario", "scenario_group", "category",
                   "reference", "chosen", "rejected")
PAIR_MODES = ("ab", "chosen_rejected")


def _category_groups(path: Path, value: Any) -> list[tuple[str, str]]:
    """``category_groups``: "mmlu*=Exam Questions,livecodebench*=Code" or a mapping -> [(pattern, group)]."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts = [part.partition("=") for part in value.split(",") if part.strip()]
        if not parts or any(not sep for _, sep, _ in parts):
            raise InputError(path, "category_groups must look like 'CATEGORY=GROUP,...' (a * in CATEGORY matches "
                                   "anything), e.g. 'mmlu*=Exam Questions,livecodebench=Code'", field="category_groups")
        value = {k.strip(): v.strip() for k, _, v in parts}
    if not isinstance(value, Mapping):
        raise InputError(path, "category_groups must map categories to scenario groups", field="category_groups")
    out = []
    for pattern, group in value.items():
        canonical = catalogue.group_for_scenario(group)
        if canonical is None:
            raise InputError(path, f"category_groups maps {pattern!r} to {group!r}, which is not one of the scenario "
                                   f"groups ({', '.join(catalogue.group_keys())})", field="category_groups")
        out.append((str(pattern), canonical))
    return out


def _group_of(category: str | None, rules: list[tuple[str, str]]) -> str | None:
    import fnmatch

    if category is None:
        return None
    for pattern, group in rules:
        if fnmatch.fnmatchcase(category, pattern):
            return group
    return None


def _swapped_rows(path: Path, swapped: Any, id_column: str | None) -> tuple[Path, dict[str, _Row] | list[_Row]]:
    """The rows of the swapped run's file: by id when the files have an id column, else in order."""
    p = Path(swapped)
    if not p.is_file():
        raise InputError(p, "no such file (the swapped run's verdicts)", field="swapped")
    rows = list(_records(p))
    if id_column is None:
        return p, rows
    out: dict[str, _Row] = {}
    for rec in rows:
        key = rec.require(id_column)
        if isinstance(key, (dict, list, bool, float)):
            raise rec.error(id_column, f"must be a string or an integer, not {_type(key)}")
        if str(key) in out:
            raise rec.error(id_column, f"duplicate id {str(key)!r} (also in row {out[str(key)].n})")
        out[str(key)] = rec
    return p, out


def parse_generic(path: Any, *, dataset: str | None = None, columns: Mapping[str, str] | None = None,
                  judge: str = "human", judge_kind: str = "human", label_values: Any = None,
                  pairs: str = "ab", seed: Any = 0, allow_empty: Any = False, category_groups: Any = None,
                  swapped: Any = None, ba_mapped: Any = False, score_scale: Any = 1.0) -> ParsedFile:
    """Any CSV / TSV / JSONL / JSON list / parquet of pairs.

    ``columns`` maps our names (GENERIC_COLUMNS) to the file's column names, or to a path into
    nested JSON ("judgments.0.judgment.response"); unmapped ones use our names and are optional
    except the query and the two responses. Every bad row is reported at once (``InputErrors``).

    One judge's verdicts, all stored on one label per pair:

    - ``label``: the verdict (with A shown first, when the swapped order is given too). A/B/tie in
      any case; other spellings through ``label_values`` ({"1": "A", "2": "B", "0": "tie"} or
      "1=A,2=B,0=tie"; an empty right side means "no verdict"); a strength "A>>B" / "A>B" / "A=B"
      / "B>A" / "B>>A" (kept as the verdict's strength); or a judge's answer ending in "[[A>B]]".
    - ``label_ba``: the verdict of the run with B shown first, as that run gave it ("A" = the
      response shown first); it is mapped back to A/B (``ba_mapped=1``: the column is already in
      A/B terms). ``swapped=FILE``: the swapped run in a second file (same columns, rows matched
      by the ``id`` column, else row by row).
    - ``prob_a``: P(A). ``scores`` / ``scores_ba``: a list of two scores [shown first, shown
      second] per run (a reward model's), or ``score_a`` and ``score_b``; P(A) per run is
      sigmoid((score A - score B) / ``score_scale``), the label's P(A) their mean.

    ``category``: the user's own category (any taxonomy), kept as the sample's category for
    filters, breakdowns and fit scopes; ``category_groups`` ("mmlu*=Exam Questions,..."; * matches
    anything) also files categories under the paper's scenario groups. ``allow_empty=1`` keeps
    empty responses (rejected by default). ``pairs="chosen_rejected"`` reads ``chosen`` /
    ``rejected`` columns and puts the chosen response at A or B by a coin seeded with ``seed`` and
    the pair's content, recorded in the sample metadata, with the label on the chosen side. An
    ``id`` column must be unique. The default dataset name is the file's stem.
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
    scale = _scale_option(path, score_scale)
    allow_empty = _flag(allow_empty)
    vocab = _vocab_option(path, label_values)
    rules = _category_groups(path, category_groups)
    b = _Builder(Dataset(dataset or path.stem, source=f"imported from {path.name}"), path)
    judge = b.judge(judge, judge_kind, notes=f"labels imported from {path.name}")
    ab_cols, ba_cols = _verdict_columns(columns)
    has_ba = swapped is not None or "label_ba" in columns or "scores_ba" in columns
    verdict_mapped = any(k in columns for k in ("label", "label_ba", "prob_a", "scores", "scores_ba", "score_a", "score_b"))
    id_column = col["id"]
    swapped_file, swapped_rows = _swapped_rows(path, swapped, id_column if "id" in columns else None) \
        if swapped is not None else (None, None)
    ba_mapped = _flag(ba_mapped)

    mapped = [col[name] for name in columns if name not in ("chosen", "rejected") or pairs == "chosen_rejected"]

    def optional(rec: _Row, name: str, *, text: bool = False) -> Any:
        """An optional column: None when absent (a mapped column's presence is checked once per row)."""
        return rec.text(col[name], optional=True, scalars=True) if text else rec.get(col[name])

    prob_col = "prob_a" in columns or not (columns.keys() & set(VERDICT_FIELDS))
    _check_orders(path, columns, swapped)
    source = f"generic:{path.name}"
    group_of = _memo(catalogue.group_for_scenario)
    problems = Problems(path)
    first_row_of: dict[str, int | None] = {}
    seen_categories: set[str] = set()
    labelled = 0
    try:
        for i, rec in enumerate(_records(path, problems)):
            try:
                for c in mapped:  # a column the caller mapped must exist, even when empty
                    rec.require(c)
                query = rec.text(col["query"])
                metadata: dict[str, Any] = {}
                fields: dict[str, Any] = {}
                if pairs == "chosen_rejected":
                    chosen = rec.text(col["chosen"], allow_empty=allow_empty)
                    rejected = rec.text(col["rejected"], allow_empty=allow_empty)
                    choice = _coin(seed, query, chosen, rejected)
                    a, bb = (chosen, rejected) if choice == "A" else (rejected, chosen)
                    metadata = {"ab_seed": seed, "chosen": choice}
                    fields = {"choice": choice, "prob_a": None}
                else:
                    a = rec.text(col["response_a"], allow_empty=allow_empty)
                    bb = rec.text(col["response_b"], allow_empty=allow_empty)
                    ab = read_order(rec, ab_cols, vocab, swapped=False, scale=scale)
                    ba = None
                    if swapped_rows is not None:
                        other = _match_swapped(rec, swapped_rows, swapped_file, id_column if "id" in columns else None, i)
                        ba = read_order(other, ab_cols, vocab, swapped=not ba_mapped, scale=scale)
                    elif has_ba:
                        ba = read_order(rec, ba_cols, vocab, swapped=not ba_mapped, scale=scale)
                    fields = combine_orders(ab, ba, _probability(rec, col["prob_a"]) if prob_col else None)
                source_id = optional(rec, "id")
                if source_id is not None:
                    if isinstance(source_id, (dict, list, bool, float)):
                        raise rec.error(col["id"], f"must be a string or an integer, not {_type(source_id)}")
                    source_id = str(source_id)
                    if source_id in first_row_of:
                        raise rec.error(col["id"], f"duplicate id {source_id!r} (also in row {first_row_of[source_id]})")
                    first_row_of[source_id] = rec.n
                text = {name: optional(rec, name, text=True) for name in ("scenario", "scenario_group", "reference")}
                names = {name: rec.name(col[name], optional=True) for name in ("model_a", "model_b", "category")}
                group = text["scenario_group"]
                if group is not None and group_of(group) is None:
                    raise rec.error(col["scenario_group"], f"unknown scenario group {_show(group)} (expected one of {', '.join(catalogue.group_keys())})")
                category = names["category"]
                if category is not None:
                    seen_categories.add(category)
                s = b.sample(query, a, bb, model_a=names["model_a"], model_b=names["model_b"], reference=text["reference"],
                             scenario=text["scenario"], category=category,
                             scenario_group=group_of(group) or group_of(text["scenario"]) or _group_of(category, rules),
                             source_id=source_id, metadata=metadata)
                if fields is None:
                    b.counts["no_verdict"] += 1
                else:
                    labelled += 1
                    b.label(s, judge, fields.pop("choice"), **fields, source=source)
            except InputError as e:  # noted; the next row goes on, so that one rejection lists every problem
                problems.add(e)
    except InputError as e:  # a file that cannot be read on (bad encoding, broken CSV quoting)
        problems.add(e)
    for pattern, _ in rules:
        import fnmatch

        if seen_categories and not any(fnmatch.fnmatchcase(c, pattern) for c in seen_categories):
            problems.add(InputError(path, f"category_groups names {pattern!r}, which matches none of the file's "
                                          f"categories ({', '.join(sorted(seen_categories)[:10])})", field="category_groups"))
    if rules and not seen_categories and not problems:
        problems.add(InputError(path, "category_groups given, but the file has no categories (map one: --map category=COLUMN)",
                                field="category_groups"))
    if verdict_mapped and not labelled and not problems and pairs != "chosen_rejected":
        problems.add(InputError(path, "every row's verdict is empty: no label to import (the column(s) mapped for the "
                                      "judge's verdicts hold nothing)", field=col["label"]))
    problems.raise_if_any()
    return b.finish()


#: the fields that hold one judge's verdicts (``parse_generic``, ``import_labels``)
VERDICT_FIELDS = ("label", "label_ba", "prob_a", "scores", "scores_ba", "score_a", "score_b")


def _verdict_columns(columns: Mapping[str, str]) -> tuple[VerdictColumns, VerdictColumns]:
    """Where the verdicts of the two orders are. When any verdict field is mapped, only the mapped
    ones are read (a judge's file often carries the gold ``label`` too); else every field under
    its own name."""
    explicit = columns.keys() & set(VERDICT_FIELDS)

    def c(name: str) -> str | None:
        return columns.get(name) if explicit else name

    return VerdictColumns(c("label"), c("scores"), c("score_a"), c("score_b")), VerdictColumns(c("label_ba"), c("scores_ba"))


def _memo(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` remembered per argument for one file (scenario names repeat on every row)."""
    seen: dict[Any, Any] = {}

    def call(x: Any) -> Any:
        try:
            return seen[x]
        except KeyError:
            seen[x] = fn(x)
            return seen[x]
        except TypeError:  # unhashable: not a name anyway
            return fn(x)
    return call


def _check_orders(path: Path, columns: Mapping[str, str], swapped: Any) -> None:
    """A swapped run without the run with A shown first is a mapping mistake: when any verdict
    field is mapped only mapped fields are read, so ``label`` must be mapped beside ``label_ba``."""
    if ("label_ba" in columns or "scores_ba" in columns) and not columns.keys() & {"label", "scores", "score_a", "score_b"}:
        raise InputError(path, "the verdict with B shown first is mapped (label_ba / scores_ba) but not the one with A "
                               "shown first: map it too (e.g. --map label=label or --map scores=...)", field="label")


def _scale_option(path: Path, value: Any) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not math.isfinite(scale) or scale <= 0:
        raise InputError(path, f"score_scale must be a positive number, not {_show(value)}", field="score_scale")
    return scale


def _match_swapped(rec: _Row, rows, file: Path, id_column: str | None, index: int) -> _Row:
    """The swapped run's row for ``rec``: by id, or the row at the same place."""
    if id_column is not None:
        key = rec.require(id_column)
        other = rows.get(str(key))
        if other is None:
            raise rec.error(id_column, f"no row with id {str(key)!r} in the swapped run's file {file.name}")
        return other
    if index >= len(rows):
        raise InputError(file, f"has {len(rows)} rows, fewer than the pairs' file: rows must align (or map an id column)",
                         field="swapped")
    return rows[index]


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
    accepted = [p for p in inspect.signature(parser).parameters if p != "path"] + ["replace"]
    options = {k: v for k, v in options.items() if k != "replace"}
    for key in options:
        if key not in accepted:
            raise InputError(path, f"unknown option {key!r} for format {fmt!r} (accepted: {', '.join(accepted)})", field=key)
    return parser(path, **options)


def import_file(store, fmt: str, path: Any, **options: Any) -> ImportReport:
    """Parse ``path`` in format ``fmt``, validate everything, then write it in one transaction."""
    replace = options.pop("replace", False)
    batch = parse_file(fmt, path, **options)
    result = store.write_batch(batch, replace=_flag(replace))
    return ImportReport(**vars(result), counts=dict(batch.counts), repeats=list(batch.repeats))


LABEL_COLUMNS = ("sample_id", "label", "label_ba", "prob_a", "scores", "scores_ba", "score_a", "score_b")


def import_labels(store, path: Any, *, dataset: str, judge: str, kind: str = "llm", notes: str = "",
                  columns: Mapping[str, str] | None = None, label_values: Any = None, swapped: Any = None,
                  ba_mapped: Any = False, score_scale: Any = 1.0, replace: Any = False) -> int:
    """Labels of one judge for samples already stored; returns the number of labels written.

    Two layouts: the paper's upload format, a JSON list of "A" / "B" (or "tie"; null = no label)
    with one entry per sample in the dataset's order (``store.sample_ids(dataset)``); or a
    table (CSV, JSONL, JSON list of objects, parquet) with ``sample_id`` (our id, or the user's
    own id given at import: the ``id`` column), ``label`` and the optional columns of one judge's
    verdicts that ``parse_generic`` reads (``label_ba``, ``prob_a``, ``scores``, ``scores_ba``,
    ``score_a``, ``score_b``; ``columns`` maps them to the file's names or nested paths;
    ``swapped=FILE``: the swapped run in a second file of the same columns, matched by sample id).

    A judge that already has labels on the dataset keeps them: a file that would change one, or
    that names another kind than the stored one, is refused (``store.ConflictError``) unless
    ``replace``, which replaces the judge's labels on the dataset (and its kind). A file whose
    every label is empty is refused. Every bad row is reported at once.
    """
    path = Path(path)
    if kind not in JUDGE_KINDS:
        raise InputError(path, f"kind must be one of {', '.join(JUDGE_KINDS)}, not {_show(kind)}", field="kind")
    if not isinstance(judge, str) or not judge.strip():
        raise InputError(path, "the judge name must be a non-empty string", field="judge")
    judge = _checked_name(path, judge, "judge")
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(LABEL_COLUMNS))
    if unknown:
        raise InputError(path, f"unknown column key(s) {', '.join(map(repr, unknown))} (known: {', '.join(LABEL_COLUMNS)})",
                         field="columns")
    vocab = _vocab_option(path, label_values)
    scale = _scale_option(path, score_scale)
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
        labels, problems = [], Problems(path)
        for n, (sid, value) in enumerate(zip(ids, data), 1):
            with problems.row():
                choice, strength = parse_verdict(_Row(path, n, {}), "label", value, vocab)
                if choice is not None:
                    labels.append(Label(sid, judge, choice, source=source, strength_ab=strength))
        problems.raise_if_any()
    else:
        rows = (_Row(path, n, obj) for n, obj in enumerate(data, 1)) if data is not None else None
        own = store.source_ids(dataset)
        labels = _label_table(path, rows, set(ids), own, dataset, judge, source, columns, vocab, scale,
                              swapped, _flag(ba_mapped))
    if not labels:
        raise InputError(path, "every label in the file is empty: nothing to import (a judge with no labels "
                               "would be created)", field=columns.get("label", "label"))
    return store.write_labels([Judge(judge, kind, notes=notes)], labels, dataset=dataset, replace=_flag(replace))


def _label_table(path: Path, rows, known: set[str], own: dict[str, str], dataset: str, judge: str, source: str,
                 columns: dict[str, str], vocab: Vocab, scale: float, swapped: Any, ba_mapped: bool) -> list[Label]:
    col = {name: columns.get(name, name) for name in LABEL_COLUMNS}
    ab_cols, ba_cols = _verdict_columns(columns)
    has_ba = swapped is not None or "label_ba" in columns or "scores_ba" in columns
    problems = Problems(path)
    swapped_file, swapped_rows = (None, None)
    if swapped is not None:
        swapped_file, swapped_rows = _swapped_rows(path, swapped, col["sample_id"])

    def resolve(rec: _Row) -> str:
        raw = rec.require(col["sample_id"])
        if isinstance(raw, (dict, list, bool, float)):
            raise rec.error(col["sample_id"], f"must be a string or an integer, not {_type(raw)}")
        sid = str(raw).strip()
        if sid in known:
            return sid
        if sid in own:
            return own[sid]
        raise rec.error(col["sample_id"], f"unknown sample id {sid!r}: neither a sample id of dataset {dataset!r} "
                                          "nor an id given at its import")

    prob_col = "prob_a" in columns or not (columns.keys() & set(VERDICT_FIELDS))
    _check_orders(path, columns, swapped)
    labels, first_row_of = [], {}
    try:
        for i, rec in enumerate(rows if rows is not None else _records(path, problems)):
            try:
                if not isinstance(rec.data, Mapping):
                    raise rec.error(None, f"expected an object, found {_type(rec.data)}")
                sid = resolve(rec)
                if sid in first_row_of:
                    raise rec.error(col["sample_id"], f"duplicate sample {sid!r} (also in row {first_row_of[sid]})")
                first_row_of[sid] = rec.n
                if not (columns.keys() & set(VERDICT_FIELDS)):
                    rec.require(col["label"])
                for name in columns:
                    rec.require(col[name])
                ab = read_order(rec, ab_cols, vocab, swapped=False, scale=scale)
                ba = None
                if swapped_rows is not None:
                    key = str(rec.require(col["sample_id"]))
                    other = swapped_rows.get(key)
                    if other is None:
                        raise rec.error(col["sample_id"], f"no row for {key!r} in the swapped run's file {swapped_file.name}")
                    ba = read_order(other, ab_cols, vocab, swapped=not ba_mapped, scale=scale)
                elif has_ba:
                    ba = read_order(rec, ba_cols, vocab, swapped=not ba_mapped, scale=scale)
                fields = combine_orders(ab, ba, _probability(rec, col["prob_a"]) if prob_col else None)
                if fields is None:
                    continue
                labels.append(Label(sid, judge, fields.pop("choice"), source=source, **fields))
            except InputError as e:  # noted; the next row goes on
                problems.add(e)
    except InputError as e:
        problems.add(e)
    problems.raise_if_any()
    return labels


# ---------------------------------------------------------------------------- uploads (the dashboard's import)

UPLOAD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def save_upload(store_path: Any, filename: str, content: bytes) -> Path:
    """Keep an uploaded file beside the store (``uploads/<content hash>-<name>``) for an import job
    to read: the same content gives the same path, so the same upload is the same job. The name is
    reduced to safe characters; its suffix must be one the importers read."""
    name = Path(str(filename)).name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InputError(name or "upload", f"unsupported file type {suffix or '(none)'!r}: expected one of "
                                           f"{', '.join(UPLOAD_SUFFIXES)}")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:80].strip("._") or "upload"
    digest = hashlib.sha256(content).hexdigest()[:16]
    folder = Path(store_path).resolve().parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}-{stem}{suffix}"
    if not path.exists():
        part = path.with_name(path.name + ".part")
        part.write_bytes(content)
        part.replace(path)
    return path


def preview_rows(path: Any, n: int = 5) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names (of the first rows) and the first ``n`` rows of a file, for a mapping form."""
    rows, names = [], {}
    for _, row in read_rows(path):
        rows.append(row)
        names.update(dict.fromkeys(row))
        if len(rows) >= n:
            break
    return list(names), rows


def check_file(fmt: str, path: Any, **options: Any) -> ParsedFile:
    """Parse and validate without writing (``parse_file``): the full validation report of an upload."""
    return parse_file(fmt, path, **options)


def estimate_rows(path: Any) -> int:
    """About how many rows a file holds, cheaply: its lines (JSONL, CSV less the header; a CSV cell
    may span lines, so this can be high), the row count of a parquet file, 0 when unknown (JSON)."""
    p = Path(path)
    kind = _KINDS.get(p.suffix.lower())
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(p).metadata.num_rows)
        if kind in ("jsonl", "csv", "tsv"):
            with p.open("rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            return max(lines - (kind != "jsonl"), 0)
    except Exception:  # a file the import itself will reject, with the reason
        return 0
    return 0


def run_import(store, params: Mapping[str, Any], progress: Callable[[str, int, int], None] | None = None) -> ImportReport:
    """An import job's work: ``params`` = {"format", "path", "options"} (``dataset`` lives in the
    options). Every row is read and checked (progress every ``ROW_HOOK_EVERY`` rows, of about
    ``estimate_rows``), then everything is written in one transaction (the last step)."""
    options = dict(params.get("options") or {})
    total = estimate_rows(params["path"]) + 1  # the rows, then the write
    say = progress or (lambda *a: None)
    say("reading and checking the rows", 0, total)
    replace = options.pop("replace", False)
    token = _ROW_HOOK.set(lambda n: say(f"reading and checking the rows: {n:,} read", min(n, total - 1), total))
    try:
        batch = parse_file(params["format"], params["path"], **options)
    finally:
        _ROW_HOOK.reset(token)
    rows = batch.counts.get("rows", 0)
    total = max(total, rows + 1)
    say(f"writing {len(batch.samples):,} samples and {len(batch.labels):,} labels", total - 1, total)
    result = store.write_batch(batch, replace=_flag(replace))
    report = ImportReport(**vars(result), counts=dict(batch.counts), repeats=list(batch.repeats))
    say("done", total, total)
    return report
