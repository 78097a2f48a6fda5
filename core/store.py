"""The embedded SQLite store: every query the app needs (the schema's migrations: ``core/migrations.py``).

One file, WAL mode, a busy timeout, schema changes only through sqlite-utils migrations.
A ``Store`` wraps one connection; open one per thread (Streamlit reruns run on new threads,
and sqlite3 connections refuse to cross threads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, TypedDict

from . import config
from .migrations import MIGRATIONS, REVISED_TABLES, sqlite_utils  # sqlite-utils as imported there (lean)
from .records import Feature, ImportBatch, ImportResult, Judge, Label, name_key


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ConflictError(ValueError):
    """A write that would silently change what is stored (a judge's labels or kind, a name that
    collides with a stored one); nothing was written. The message says what and how to proceed."""


#: what a deletion can remove (``Store.delete``)
DELETABLE = ("dataset", "judge", "features", "profile")


# ---------------------------------------------------------------- typed rows
# What each read returns, by name: the rows are plain dicts (callers index them by column), typed
# here so a reader sees the shape without opening the schema (core/migrations.py).


class DatasetRow(TypedDict):
    """A dataset with its counts: samples, judges with a label, labels."""
    name: str
    source: str
    licence: str
    description: str
    synthetic: int
    imported_at: str
    samples: int
    judges: int
    labels: int


class ScenarioCountRow(TypedDict):
    """Samples of a dataset in one scenario group (``UNCLASSIFIED`` for none yet)."""
    dataset: str
    scenario_group: str
    samples: int


class CategoryCountRow(TypedDict):
    """Samples of a dataset in one of the user's own categories (None: uncategorised), with the
    scenario group all of them share (else None)."""
    dataset: str
    category: str | None
    samples: int
    scenario_group: str | None


class SampleRow(TypedDict, total=False):
    """A ``samples`` row; ``cases`` and ``metadata`` decoded from JSON. ``samples_for`` gives the
    columns an annotator or judge needs (id, dataset, query, response_a, response_b, reference,
    scenario_group, cases, words_a, words_b); ``sample`` gives all."""
    id: str
    dataset: str
    position: int
    source_id: str | None
    query: str
    response_a: str
    response_b: str
    model_a: str | None
    model_b: str | None
    reference: str | None
    scenario_group: str | None
    scenario: str | None
    cases: dict[str, Any]
    turns: int
    words_a: int | None
    words_b: int | None
    metadata: dict[str, Any]
    category: str | None


class PairMeta(TypedDict):
    """What the simulator needs of a sample: the two responding models and its query cases."""
    model_a: str | None
    model_b: str | None
    cases: dict[str, Any]


class BrowseRow(TypedDict, total=False):
    """A row of ``Store.browse``: the sample's place, the start of its query (whitespace folded),
    models, word counts; ``choices`` and ``prob_a`` per shown judge (None: no label); ``features``
    per filtered attribute; ``score`` (bm25, lower is better) only for a text search."""
    id: str
    dataset: str
    position: int
    scenario_group: str | None
    query: str
    model_a: str | None
    model_b: str | None
    words_a: int | None
    words_b: int | None
    choices: dict[str, str | None]
    prob_a: dict[str, float | None]
    features: dict[str, int | None]
    score: float


class SearchHit(TypedDict):
    """A full-text search hit: the sample and the start of its query."""
    id: str
    dataset: str
    scenario_group: str | None
    query: str


class JudgeRow(TypedDict):
    """A judge with labels, and its label counts: by choice, with a probability, with a verdict in
    both orders, and the same verdict in both."""
    name: str
    kind: str
    notes: str
    size_b: float | None
    labels: int
    a: int
    b: int
    tie: int
    with_prob: int
    both_orders: int
    consistent: int


class LabelRow(TypedDict):
    """A judge's label on a sample, with the sample's dataset."""
    sample_id: str
    judge: str
    choice: str
    prob_a: float | None
    verdict_ab: str | None
    verdict_ba: str | None
    dataset: str


class SampleLabelRow(TypedDict):
    """One judge's vote on one sample, with the judge's kind."""
    judge: str
    kind: str | None
    choice: str
    prob_a: float | None
    verdict_ab: str | None
    verdict_ba: str | None
    strength_ab: int | None
    strength_ba: int | None
    source: str | None


class FeatureSourceRow(TypedDict):
    """A feature set and how many samples it covers."""
    source: str
    samples: int


class SampleFeatureRow(TypedDict):
    """One comparison feature of a sample; ``provenance`` decoded from JSON."""
    source: str
    attribute: str
    value: int
    score_a: float | None
    score_b: float | None
    excluded: int
    provenance: dict[str, Any]


class ProfileRow(TypedDict, total=False):
    """A stored profile (``Store.profiles``): the per-attribute lists decoded from JSON, ``draws``
    (when asked for) a float32 array of draws x attributes. A read of chosen ``columns`` has only
    those keys."""
    id: int
    dataset: str
    scope: str
    judge: str
    feature_source: str
    method: str
    attributes: list[str]
    mean: list[float]
    sd: list[float] | None
    lo: list[float] | None
    hi: list[float] | None
    interval: str | None
    p_pos: Any
    n: int | None
    accuracy: float | None
    log_loss: float | None
    rhat: Any
    ess: Any
    fingerprint: str | None
    provenance: dict[str, Any] | None
    imported: int
    created_at: str
    draws: Any


class AnnotationRow(TypedDict):
    """One stored LLM request of a sample; ``parsed`` decoded from JSON (None when it failed)."""
    id: str
    annotator: str
    prompt_version: str
    step: str
    orientation: str
    parsed: Any
    status: str
    error: str | None
    cost: float | None
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: str


class LlmBatchRow(TypedDict):
    """An ``llm_batches`` row: one JSONL file of requests sent to a batch runner."""
    id: str
    job_id: int | None
    base_url: str
    model: str
    round: int
    mode: str
    path: str | None
    requests: int
    bytes: int
    input_file_id: str | None
    remote_id: str | None
    status: str
    remote_status: str | None
    answered: int
    failed: int
    malformed: int
    error: str | None
    created_at: str
    updated_at: str


class JudgeKindRow(TypedDict):
    """A judge's name, kind (human, llm, gold, ...) and size in billions of parameters."""
    name: str
    kind: str
    size_b: float | None


class JobRow(TypedDict):
    """A ``jobs`` row; ``params`` is JSON text (``core.jobs.JobStatus`` decodes it)."""
    id: int
    key: str
    kind: str
    status: str
    params: str
    total: int
    done: int
    failed: int
    cost: float
    budget: float | None
    message: str | None
    error: str | None
    worker_pid: int | None
    heartbeat_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobRunRow(TypedDict):
    """A ``job_runs`` row: one earlier run of a job, archived when it was queued again."""
    job_id: int
    run: int
    status: str
    total: int
    done: int
    failed: int
    cost: float
    budget: float | None
    message: str | None
    error: str | None
    worker_pid: int | None
    started_at: str | None
    finished_at: str | None
    archived_at: str


class FailedRequestRow(TypedDict):
    """An LLM request of a job that failed for good."""
    sample_id: str
    step: str
    orientation: str
    error: str | None
    attempts: int
    created_at: str


class ExperimentRow(TypedDict):
    """One stored experiment (``experiments`` table), its JSON columns decoded."""

    id: int
    name: str
    status: str  # created, running, paused, cancelled, failed, done
    spec: dict[str, Any]  # core.experiment.Spec.to_dict()
    job_id: int | None
    dataset: str | None  # the arms' pairs (experiment-<id>)
    queries_dataset: str | None  # the queries the generation requests hang on
    result: dict[str, Any] | None  # core.experiment.measure()
    provenance: dict[str, Any] | None
    created_at: str
    finished_at: str | None


class ExperimentLabelRow(TypedDict):
    """A judge's label on one of an experiment's pairs: the arm (``model_a``) and query (``source_id``)."""

    sample_id: str
    model_a: str
    source_id: str
    choice: str
    prob_a: float | None


class ExperimentFeatureRow(TypedDict):
    """One comparison feature of one of an experiment's pairs."""

    sample_id: str
    model_a: str
    source_id: str
    attribute: str
    value: int


class Store:
    """One connection to the store file, migrated and in WAL mode."""

    # ==================== connection, transactions, generic reads

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float | None = None):
        settings = config.settings()
        self.path = Path(path) if path is not None else settings.store
        self.path.parent.mkdir(parents=True, exist_ok=True)
        timeout = settings.busy_timeout_s if busy_timeout_s is None else busy_timeout_s
        conn = sqlite3.connect(str(self.path), timeout=timeout)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        if MIGRATIONS.pending(self.db):
            with _migration_lock:
                try:
                    MIGRATIONS.apply(self.db)
                except sqlite3.OperationalError:
                    # another process migrated the same file between our check and our write
                    if MIGRATIONS.pending(self.db):
                        raise

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def writing(self, *, bulk: bool = False) -> Iterator["Store"]:
        """A write transaction, all or nothing.

        BEGIN IMMEDIATE takes the write lock up front, waiting up to the busy timeout: a deferred
        transaction that reads first and writes later fails at once with "database is locked"
        when another process wrote in between (WAL cannot upgrade a stale snapshot). Nested use
        becomes a savepoint (which journals every page it changes: a bulk write should not nest).

        ``bulk``: a large write (an import). Its transaction gets a page cache of BULK_CACHE_KIB
        instead of SQLite's 2 MB, so the changed pages of the tables and their indexes stay in memory
        until the commit rather than spill to the WAL as they are written (the demo's first-start
        write: a third less CPU); the connection's own cache size is restored after."""
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self
            return
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0] if bulk else None
        if bulk:
            self.conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.rollback()
                raise
            else:
                self.conn.execute("COMMIT")
        finally:
            if bulk:
                self.conn.execute(f"PRAGMA cache_size = {int(cache)}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return row[0] if row else None

    def version(self) -> tuple:
        """Changes whenever stored content does (samples, judges, labels, features, profiles, datasets):
        the largest rowids move with inserts, the revision counter with updates and deletes. Cheap
        (the ends of the rowid trees, no count), so caches can key on it; job bookkeeping does not
        move it."""
        return tuple(self.conn.execute(
            "SELECT " + ", ".join(f"(SELECT MAX(rowid) FROM {t})" for t in REVISED_TABLES)
            + ", (SELECT n FROM revision)").fetchone())

    def is_empty(self) -> bool:
        return not self.scalar("SELECT EXISTS (SELECT 1 FROM samples)")

    def table_counts(self) -> dict[str, int]:
        names = ["datasets", "samples", "judges", "labels", "annotations", "features", "jobs", "profiles"]
        return {n: self.scalar(f"SELECT COUNT(*) FROM {n}") for n in names}

    def overview(self) -> "Overview":
        """Everything the Overview page shows, in one call."""
        return Overview(
            counts=self.table_counts(),
            datasets=self.datasets(),
            scenarios=self.scenario_counts(),
            judges=self.judges(),
        )

    # ==================== imports: one validated batch across datasets, samples, judges, labels, features

    def write_batch(self, batch: ImportBatch, *, replace: bool = False, annotations: list[dict[str, Any]] = (),
                    profiles: list[dict[str, Any]] = ()) -> ImportResult:
        """Write one validated import in a single transaction: all of it or nothing.

        Refused with ``ConflictError`` (nothing written) when a dataset, judge or model name collides
        with a stored one after case folding, or when the batch would change a stored label of a
        judge or a judge's kind, unless ``replace``: then the judges' labels on this dataset become
        the batch's (labels the batch does not have are removed) and their kind the batch's.
        Identical labels are no change, so re-importing a file adds nothing and is never refused.

        ``annotations`` (finished requests, ``insert_annotations``) and ``profiles`` (``save_profile``)
        go into the same transaction: a generated dataset (the demo) arrives with them, all or nothing,
        without nesting this write in another transaction (see ``writing``)."""
        ts = now()
        ds = batch.dataset
        with self.writing(bulk=True):
            c = self.conn
            batch = self._legacy_ids(batch)
            self._check_names(ds.name, batch.judges, {m for s in batch.samples for m in (s.model_a, s.model_b) if m})
            self._check_label_changes(batch.judges, batch.labels, ds.name, replace=replace)
            c.execute(
                "INSERT INTO datasets (name, source, licence, description, synthetic, imported_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at",
                (ds.name, ds.source, ds.licence, ds.description, int(ds.synthetic), ts, ts),
            )
            existing = {
                r[0]
                for r in _chunked_in(c, "SELECT id FROM samples WHERE id IN ({})", [s.id for s in batch.samples])
            }
            next_pos = c.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM samples WHERE dataset = ?", (ds.name,)
            ).fetchone()[0]
            new_rows = []
            for s in batch.samples:
                if s.id in existing:
                    continue
                existing.add(s.id)
                new_rows.append(s.row(next_pos))
                next_pos += 1
            if new_rows:
                cols = list(new_rows[0])
                c.executemany(
                    f"INSERT INTO samples ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [tuple(r[k] for k in cols) for r in new_rows],
                )
            if replace:
                self._replace_judges(batch.judges, ds.name)
            self._upsert_judges(batch.judges, ts)
            self._upsert_labels(batch.labels, ts)
            self._upsert_features(batch.features, ts)
            self.insert_annotations(list(annotations), ts)
            for row in profiles:
                self.save_profile(row)
        return ImportResult(
            dataset=ds.name,
            samples_added=len(new_rows),
            samples_seen=len(batch.samples),
            labels_written=len(batch.labels),
            judges=[j.name for j in batch.judges],
            features_written=len(batch.features),
        )

    def _legacy_ids(self, batch: ImportBatch) -> ImportBatch:
        """The batch with a pair stored before texts were normalised (under the id of its raw text)
        pointing at that stored sample: its labels and features go there, and it is not added again."""
        from dataclasses import replace

        legacy = {s.legacy_id: s.id for s in batch.samples if s.legacy_id}
        if not legacy:
            return batch
        found = {r[0] for r in _chunked_in(self.conn, "SELECT id FROM samples WHERE id IN ({})", list(legacy))}
        if not found:
            return batch
        to_old = {legacy[old]: old for old in found}
        return replace(
            batch,
            samples=[replace(s, id=to_old[s.id], legacy_id=None) if s.id in to_old else s for s in batch.samples],
            labels=[replace(l, sample_id=to_old[l.sample_id]) if l.sample_id in to_old else l for l in batch.labels],
            features=[replace(f, sample_id=to_old[f.sample_id]) if f.sample_id in to_old else f for f in batch.features])

    def _check_names(self, dataset: str | None, judges: Iterable[Judge], models: set[str] = frozenset()) -> None:
        """Refuse a name that differs from a stored (or another new) one only by case: two judges
        that look alike would split one judge's labels, or merge two."""
        def check(what: str, new: Iterable[str], stored: Iterable[str]) -> None:
            seen = {name_key(n): n for n in stored}
            for n in new:
                other = seen.setdefault(name_key(n), n)
                if other != n:
                    raise ConflictError(f"{what} name {n!r} collides with the existing {what} {other!r} "
                                        f"(they differ only by case); use {other!r}, or choose a distinct name")

        if dataset is not None:
            check("dataset", [dataset], (r[0] for r in self.conn.execute("SELECT name FROM datasets")))
        check("judge", [j.name for j in judges], (r[0] for r in self.conn.execute("SELECT name FROM judges")))
        if models:
            stored = (r[0] for r in self.conn.execute(
                "SELECT model_a FROM samples WHERE model_a IS NOT NULL UNION SELECT model_b FROM samples"
                " WHERE model_b IS NOT NULL"))
            check("model", sorted(models), stored)

    def _check_label_changes(self, judges: list[Judge], labels: list[Label], dataset: str | None, *,
                             replace: bool) -> None:
        """ConflictError when ``labels`` would change a stored label, or ``judges`` a stored kind, unless ``replace``."""
        if replace:
            return
        kinds = dict(self.conn.execute("SELECT name, kind FROM judges"))
        for j in judges:
            if j.name in kinds and kinds[j.name] != j.kind:
                raise ConflictError(f"judge {j.name!r} is stored as kind {kinds[j.name]!r}, not {j.kind!r}; "
                                    f"pass kind {kinds[j.name]!r}, or replace the judge's labels (--replace)")
        by_judge: dict[str, dict[str, Label]] = {}
        for l in labels:
            by_judge.setdefault(l.judge, {})[l.sample_id] = l
        for judge, mine in by_judge.items():
            if judge not in kinds:
                continue
            changed, first = 0, None
            ids = list(mine)
            for sid, choice, prob_a, ab, ba in _chunked_in(
                self.conn, "SELECT sample_id, choice, prob_a, verdict_ab, verdict_ba FROM labels WHERE judge = ?"
                " AND sample_id IN ({})", ids, prefix=[judge]
            ):
                l = mine[sid]
                stored, new = (choice, prob_a, ab, ba), (l.choice, l.prob_a, l.verdict_ab, l.verdict_ba)
                if stored != new:
                    changed += 1
                    if first is None:
                        k = next(i for i in range(4) if stored[i] != new[i])
                        first = (sid, ("choice", "prob_a", "verdict_ab", "verdict_ba")[k], stored[k], new[k])
            if changed:
                raise ConflictError(
                    f"judge {judge!r} already has labels here, and {changed:,} of them would change (sample "
                    f"{first[0]}: {first[1]} stored {first[2]!r}, new {first[3]!r}); nothing was written. To replace this judge's "
                    "labels on the dataset, ask for it (--replace, or the page's confirmation); to keep both, "
                    "use another judge name")

    # ==================== snapshots: some tables' rows as a database image of their own (the prebuilt demo)

    def snapshot(self, tables: Iterable[str], *, omit: dict[str, Iterable[str]], meta: dict[str, str]) -> bytes:
        """The rows of ``tables`` (in rowid order, without the ``omit`` columns) and ``meta`` (a key-value
        table), as an SQLite database image (``copy_snapshot`` copies it into a store). Writes nothing here;
        refused inside a transaction (an image is attached and made outside one)."""
        c = self.conn
        if c.in_transaction:
            raise ValueError("a snapshot is taken outside a transaction")
        c.execute("ATTACH DATABASE ':memory:' AS snapshot")
        try:
            c.execute("CREATE TABLE snapshot.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            c.executemany("INSERT INTO snapshot.meta VALUES (?, ?)", sorted(meta.items()))
            for t in tables:
                skip = set(omit.get(t, ()))
                cols = [r[1] for r in c.execute(f"PRAGMA main.table_info([{t}])") if r[1] not in skip]
                c.execute(f"CREATE TABLE snapshot.[{t}] AS SELECT {', '.join(f'[{k}]' for k in cols)}"
                          f" FROM main.[{t}] ORDER BY rowid")
            c.commit()
            return c.serialize(name="snapshot")
        finally:
            c.execute("DETACH DATABASE snapshot")

    def copy_snapshot(self, image: bytes, tables: Iterable[str], *, fill: dict[str, dict[str, Any]],
                      meta: dict[str, str]) -> dict[str, int] | None:
        """Copy a ``snapshot`` image's tables into this store's, in the order given (a table after those its
        rows refer to), in one transaction inside SQLite; the ``fill`` columns of each table get the values
        given (a write's time). Nothing is written when the image's meta is not ``meta``, when one of the
        tables already has rows, or when a transaction is open (an image is attached outside one). Returns
        the rows copied per table, or None when nothing was written."""
        c = self.conn
        if c.in_transaction:
            return None
        tables = list(tables)
        c.execute("ATTACH DATABASE ':memory:' AS snapshot")
        try:
            c.deserialize(image, name="snapshot")
            if dict(c.execute("SELECT key, value FROM snapshot.meta").fetchall()) != meta:
                return None
            counts: dict[str, int] = {}
            with self.writing(bulk=True):
                if any(c.execute(f"SELECT EXISTS (SELECT 1 FROM main.[{t}])").fetchone()[0] for t in tables):
                    return None
                for t in tables:
                    cols = [f"[{r[1]}]" for r in c.execute(f"PRAGMA snapshot.table_info([{t}])")]
                    extra = fill.get(t, {})
                    names = cols + [f"[{k}]" for k in extra]
                    counts[t] = c.execute(
                        f"INSERT INTO main.[{t}] ({', '.join(names)}) SELECT {', '.join(cols + ['?'] * len(extra))}"
                        f" FROM snapshot.[{t}] ORDER BY rowid", list(extra.values())).rowcount
            return counts
        finally:
            c.execute("DETACH DATABASE snapshot")

    # ==================== datasets and samples (samples_fts)

    def datasets(self) -> list[DatasetRow]:
        return self.rows(
            "WITH n AS (SELECT dataset, COUNT(*) AS samples FROM samples GROUP BY dataset),"
            " per AS (SELECT s.dataset, COUNT(*) AS labels, COUNT(DISTINCT l.judge) AS judges"
            "         FROM samples s JOIN labels l ON l.sample_id = s.id GROUP BY s.dataset)"
            " SELECT d.name, d.source, d.licence, d.description, d.synthetic, d.imported_at,"
            " COALESCE(n.samples, 0) AS samples, COALESCE(per.judges, 0) AS judges, COALESCE(per.labels, 0) AS labels"
            " FROM datasets d LEFT JOIN n ON n.dataset = d.name LEFT JOIN per ON per.dataset = d.name ORDER BY d.name"
        )

    def category_counts(self, dataset: str | None = None) -> list[CategoryCountRow]:
        """Samples per dataset and user category (only datasets that have categories), with the
        scenario group each category maps to when all its samples share one (else None)."""
        where, params = ("AND dataset = ?", [dataset]) if dataset else ("", [])
        return self.rows(
            "SELECT dataset, category, COUNT(*) AS samples,"
            " CASE WHEN COUNT(DISTINCT scenario_group) = 1 AND COUNT(scenario_group) = COUNT(*)"
            "  THEN MIN(scenario_group) END AS scenario_group"
            " FROM samples WHERE dataset IN (SELECT DISTINCT dataset FROM samples WHERE category IS NOT NULL)"
            f" {where} GROUP BY dataset, category ORDER BY dataset, category IS NULL, category", params)

    def categories(self, dataset: str) -> list[str]:
        """The user's own categories of a dataset, sorted (index-only)."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT category FROM samples WHERE dataset = ? AND category IS NOT NULL ORDER BY category",
            (dataset,))]

    def scenario_counts(self, dataset: str | None = None) -> list[ScenarioCountRow]:
        where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("", [])
        return self.rows(
            "SELECT dataset, COALESCE(scenario_group, '(unclassified)') AS scenario_group, COUNT(*) AS samples"
            f" FROM samples {where} GROUP BY dataset, scenario_group ORDER BY dataset, scenario_group",
            params,
        )

    def sample(self, sample_id: str) -> SampleRow | None:
        rows = self.rows("SELECT * FROM samples WHERE id = ?", [sample_id])
        if not rows:
            return None
        row = rows[0]
        for k in ("cases", "metadata"):
            row[k] = json.loads(row[k]) if row[k] else {}
        return row

    def sample_ids(self, dataset: str) -> list[str]:
        """The dataset's sample ids in import order (the order label lists refer to)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM samples WHERE dataset = ? ORDER BY position", (dataset,)
        )]

    def model_pair_counts(self, dataset: str) -> dict[str, int]:
        """Per responding model, the pairs of the dataset it answers in against another named model (the
        simulator's model list: a count in SQL, not a read of every pair's metadata)."""
        return dict(self.conn.execute(
            "SELECT model, COUNT(*) FROM (SELECT model_a AS model FROM samples WHERE dataset = ?1"
            "  AND model_a != '' AND model_b != '' AND model_a != model_b"
            " UNION ALL SELECT model_b FROM samples WHERE dataset = ?1"
            "  AND model_a != '' AND model_b != '' AND model_a != model_b) GROUP BY model", (dataset,)).fetchall())

    def pair_meta(self, dataset: str) -> dict[str, PairMeta]:
        """Per sample id: the two responding models and the query cases (decoded), for the simulator."""
        out = {}
        for sid, model_a, model_b, cases in self.conn.execute(
            "SELECT id, model_a, model_b, cases FROM samples WHERE dataset = ?", (dataset,)
        ):
            out[sid] = {"model_a": model_a, "model_b": model_b, "cases": json.loads(cases) if cases else {}}
        return out

    def samples_for(self, dataset: str, *, scenario: str | None = None, limit: int | None = None,
                    ids: list[str] | None = None) -> list[SampleRow]:
        """Samples to annotate or judge, in dataset order."""
        sql = ("SELECT id, dataset, query, response_a, response_b, reference, scenario_group, cases, words_a, words_b"
               " FROM samples WHERE dataset = ?")
        params: list[Any] = [dataset]
        if scenario:
            sql += " AND scenario_group = ?"
            params.append(scenario)
        if ids is not None:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            params.extend(ids)
        sql += " ORDER BY position"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self.rows(sql, params)
        for r in rows:
            r["cases"] = json.loads(r["cases"]) if r["cases"] else {}
        return rows

    def set_sample_analysis(self, sample_id: str, *, scenario_group: str | None = None,
                            cases: dict[str, bool] | None = None) -> None:
        """Fill a sample's scenario group or query cases from annotation, never overwriting data."""
        with self.writing():
            if scenario_group:
                self.conn.execute(
                    "UPDATE samples SET scenario_group = ? WHERE id = ? AND scenario_group IS NULL",
                    (scenario_group, sample_id),
                )
            if cases:
                self.conn.execute(
                    "UPDATE samples SET cases = ? WHERE id = ? AND (cases IS NULL OR cases = '{}')",
                    (json.dumps(cases, sort_keys=True), sample_id),
                )

    def search(self, text: str, *, dataset: str | None = None, limit: int = 50) -> list[SearchHit]:
        """Full-text search over query and responses, best match first."""
        q = fts_query(text)
        if not q:
            return []
        # rank inside FTS5 first and join only the hits kept: joining every match before the
        # LIMIT costs seconds on common words over 100k samples (see _fts_hits for the rest)
        hits, params = self._fts_hits(q, SampleFilter(dataset=dataset))
        params.append(limit)
        return self.rows(
            "SELECT s.id, s.dataset, s.scenario_group, substr(s.query, 1, 200) AS query FROM"
            f" ({hits} ORDER BY score, rowid LIMIT ?) hit"
            " JOIN samples s ON s.rowid = hit.rowid ORDER BY hit.score, hit.rowid",
            params,
        )

    def dataset_of(self, sample_id: str) -> str | None:
        """The dataset a sample belongs to (None: no such sample)."""
        return self.scalar("SELECT dataset FROM samples WHERE id = ?", [sample_id])

    def source_ids(self, dataset: str) -> dict[str, str]:
        """The dataset's samples by the id their source gave them: {source id: sample id}."""
        return dict(self.conn.execute("SELECT source_id, id FROM samples WHERE dataset = ? AND source_id IS NOT NULL",
                                      (dataset,)))

    # ==================== browsing samples (the Samples page)

    def dataset_span(self, dataset: str) -> tuple[int, int] | None:
        """(first, last) rowid of a dataset when its samples fill that rowid range alone (the usual
        case: an import appends), else None. Cached until this or another connection writes."""
        cache = self.__dict__.setdefault("_span_cache", {})
        version = (self.conn.total_changes, self.scalar("PRAGMA data_version"))
        hit = cache.get(dataset)
        if hit is None or hit[0] != version:
            lo, hi, n = self.conn.execute(
                "SELECT MIN(rowid), MAX(rowid), COUNT(*) FROM samples WHERE dataset = ?", (dataset,)).fetchone()
            hit = cache[dataset] = (version, (lo, hi) if n and hi - lo + 1 == n else None)
        return hit[1]

    def _filter_sql(self, f: "SampleFilter") -> tuple[list[str], list[Any]]:
        """WHERE terms over ``samples s`` for everything in ``f`` but the text."""
        from . import catalogue

        where: list[str] = []
        params: list[Any] = []
        if f.dataset:
            where.append("s.dataset = ?")
            params.append(f.dataset)
        if f.scenario == UNCLASSIFIED:
            where.append("s.scenario_group IS NULL")
        elif f.scenario:
            where.append("s.scenario_group = ?")
            params.append(f.scenario)
        if f.category == UNCATEGORISED:
            where.append("s.category IS NULL")
        elif f.category:
            where.append("s.category = ?")
            params.append(f.category)
        if f.case:
            if f.case not in catalogue.case_keys():
                raise ValueError(f"unknown query case {f.case!r}; cases are {', '.join(catalogue.case_keys())}")
            where.append("json_extract(s.cases, '$.' || ?) = 1")
            params.append(f.case)
        if f.judge:
            # correlated probes of the primary keys: a page in dataset order stops early, where a
            # materialised id list would read every label of the judge first
            where.append("EXISTS (SELECT 1 FROM labels WHERE sample_id = s.id AND judge = ?)")
            params.append(f.judge)
        if f.disagree:
            if len(set(f.disagree)) < 2:
                raise ValueError("pick two or more judges to find where they disagree")
            where.append("(SELECT COUNT(DISTINCT choice) FROM labels WHERE sample_id = s.id AND judge IN"
                         f" ({', '.join('?' * len(f.disagree))}) AND choice != 'tie') > 1")
            params.extend(f.disagree)
        if f.attributes:
            if not f.feature_source:
                raise ValueError("filtering on attributes needs a feature source")
            value = {"A": "= 1", "B": "= -1"}.get(f.direction or "", "!= 0")
            if f.direction not in (None, "", "any", "A", "B"):
                raise ValueError(f"direction must be A, B or any, not {f.direction!r}")
            for attr in f.attributes:
                where.append("EXISTS (SELECT 1 FROM features WHERE sample_id = s.id AND source = ? AND attribute = ?"
                             f" AND value {value}" + ("" if f.include_excluded else " AND excluded = 0") + ")")
                params.extend([f.feature_source, attr])
        return where, params

    def _fts_hits(self, q: str, f: "SampleFilter") -> tuple[str, list[Any]]:
        """``SELECT rowid, score`` of the full-text matches that pass ``f`` (lower score = better).

        bm25() sorted by SQLite's top-N sorter under a LIMIT, not FTS5's ``ORDER BY rank``, which
        sorts every match in a second statement first (twice the time on common words). A dataset
        is a rowid range when it fills one (FTS5 seeks it); other filters join as a set that FTS5
        must not see: a ``rowid IN`` it can use runs one full-text query per listed sample (minutes
        at 100k), hence ``+rowid``."""
        sql = "SELECT rowid, bm25(samples_fts) AS score FROM samples_fts WHERE samples_fts MATCH ?"
        params: list[Any] = [q]
        span = self.dataset_span(f.dataset) if f.dataset else None
        if span:
            sql += " AND rowid BETWEEN ? AND ?"
            params.extend(span)
        where, wparams = self._filter_sql(f if not span else _without_dataset(f))
        if where:
            sql += f" AND +rowid IN (SELECT s.rowid FROM samples s WHERE {' AND '.join(where)})"
            params.extend(wparams)
        return sql, params

    def browse(self, f: "SampleFilter | None" = None, *, offset: int = 0,
               limit: int = 50) -> tuple[list[BrowseRow], int]:
        """One page of the samples that pass ``f`` and how many pass in all.

        Rows in dataset order (dataset, then position), or best match first when ``f.text`` is set
        (``score``: bm25, lower is better). Each row: id, dataset, position, scenario_group, query
        (its start), models, word counts; ``choices`` and ``prob_a`` of ``f.shown_judges()`` (None
        where a judge did not label it); ``features``: the value of each filtered attribute."""
        f = f or SampleFilter()
        offset, limit = max(int(offset), 0), max(int(limit), 0)
        judges = f.shown_judges()
        extra, xparams = [], []
        for i, j in enumerate(judges):
            extra.append(f"(SELECT choice FROM labels WHERE sample_id = s.id AND judge = ?) AS _c{i}")
            extra.append(f"(SELECT prob_a FROM labels WHERE sample_id = s.id AND judge = ?) AS _p{i}")
            xparams.extend([j, j])
        for i, a in enumerate(f.attributes):
            extra.append(f"(SELECT value FROM features WHERE sample_id = s.id AND source = ? AND attribute = ?) AS _f{i}")
            xparams.extend([f.feature_source, a])
        cols = ("s.id, s.dataset, s.position, s.scenario_group, substr(s.query, 1, 160) AS query, s.model_a,"
                " s.model_b, s.words_a, s.words_b" + "".join(", " + e for e in extra))
        q = fts_query(f.text or "")
        if f.text and not q:
            return [], 0
        if q:
            hits, hparams = self._fts_hits(q, f)
            total = self.scalar(f"SELECT COUNT(*) FROM ({hits})", hparams)
            rows = self.rows(
                f"SELECT {cols}, hit.score FROM ({hits} ORDER BY score, rowid LIMIT ? OFFSET ?) hit"
                " JOIN samples s ON s.rowid = hit.rowid ORDER BY hit.score, hit.rowid",
                xparams + hparams + [limit, offset])
        else:
            where, params = self._filter_sql(f)
            clause = " WHERE " + " AND ".join(where) if where else ""
            total = self.scalar(f"SELECT COUNT(*) FROM samples s{clause}", params)
            rows = self.rows(f"SELECT {cols} FROM samples s{clause} ORDER BY s.dataset, s.position LIMIT ? OFFSET ?",
                             xparams + params + [limit, offset])
        for r in rows:
            r["query"] = " ".join((r["query"] or "").split())
            r["choices"] = {j: r.pop(f"_c{i}") for i, j in enumerate(judges)}
            r["prob_a"] = {j: r.pop(f"_p{i}") for i, j in enumerate(judges)}
            r["features"] = {a: r.pop(f"_f{i}") for i, a in enumerate(f.attributes)}
        return rows, int(total or 0)

    def browse_index(self, sample_id: str, f: "SampleFilter | None" = None) -> int | None:
        """Where a sample stands in ``browse``'s order for ``f`` (0-based), or None when it does not
        pass the filter: for previous / next, and for the page a linked sample is on."""
        f = f or SampleFilter()
        q = fts_query(f.text or "")
        if f.text and not q:
            return None
        if q:
            hits, params = self._fts_hits(q, f)
            rowid = self.scalar("SELECT rowid FROM samples WHERE id = ?", [sample_id])
            row = None if rowid is None else self.conn.execute(f"{hits} AND rowid = ?", params + [rowid]).fetchone()
            if row is None:
                return None
            score = row[1]
            return int(self.scalar(f"SELECT COUNT(*) FROM ({hits}) WHERE score < ? OR (score = ? AND rowid < ?)",
                                   params + [score, score, rowid]))
        where, params = self._filter_sql(f)
        clause = " AND ".join(where) if where else "1 = 1"
        row = self.conn.execute(f"SELECT s.dataset, s.position FROM samples s WHERE {clause} AND s.id = ?",
                                params + [sample_id]).fetchone()
        if row is None:
            return None
        return int(self.scalar(f"SELECT COUNT(*) FROM samples s WHERE {clause} AND (s.dataset, s.position) < (?, ?)",
                               params + list(row)))

    # ==================== judges and labels

    def judge_name(self, name: str) -> str:
        """A judge name as it will be stored (``records.normalise_name``); ValueError when it cannot
        be one, ConflictError when it differs from a stored judge's name only by case."""
        from .records import normalise_name

        name = normalise_name(name, "judge name")
        self._check_names(None, [Judge(name, "llm")])
        return name

    def _upsert_judges(self, judges: Iterable[Judge], ts: str) -> None:
        self.conn.executemany(
            "INSERT INTO judges (name, kind, notes, size_b, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET"
            "  notes = CASE WHEN excluded.notes != '' THEN excluded.notes ELSE judges.notes END,"
            "  size_b = COALESCE(excluded.size_b, judges.size_b)",
            [(j.name, j.kind, j.notes, j.size_b, ts) for j in judges],
        )

    def _upsert_labels(self, labels: Iterable[Label], ts: str) -> None:
        self.conn.executemany(
            "INSERT INTO labels (sample_id, judge, choice, prob_a, verdict_ab, verdict_ba, source, created_at,"
            " strength_ab, strength_ba, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(sample_id, judge) DO UPDATE SET choice = excluded.choice, prob_a = excluded.prob_a,"
            "  verdict_ab = excluded.verdict_ab, verdict_ba = excluded.verdict_ba, source = excluded.source,"
            "  strength_ab = excluded.strength_ab, strength_ba = excluded.strength_ba, detail = excluded.detail"
            " WHERE labels.choice IS NOT excluded.choice OR labels.prob_a IS NOT excluded.prob_a"
            "  OR labels.verdict_ab IS NOT excluded.verdict_ab OR labels.verdict_ba IS NOT excluded.verdict_ba"
            "  OR labels.strength_ab IS NOT excluded.strength_ab OR labels.strength_ba IS NOT excluded.strength_ba"
            "  OR labels.detail IS NOT excluded.detail",
            [(l.sample_id, l.judge, l.choice, l.prob_a, l.verdict_ab, l.verdict_ba, l.source, ts,
              l.strength_ab, l.strength_ba, json.dumps(l.detail, sort_keys=True) if l.detail else None)
             for l in labels],
        )

    def _replace_judges(self, judges: list[Judge], dataset: str | None) -> None:
        """Before a replacing write: drop the judges' labels on the dataset and take the new kind."""
        for j in judges:
            if dataset is not None:
                self.conn.execute("DELETE FROM labels WHERE judge = ? AND sample_id IN"
                                  " (SELECT id FROM samples WHERE dataset = ?)", (j.name, dataset))
            self.conn.execute("UPDATE judges SET kind = ? WHERE name = ? AND kind != ?", (j.kind, j.name, j.kind))

    def write_labels(self, judges: list[Judge], labels: list[Label], *, dataset: str | None = None,
                     replace: bool | None = None) -> int:
        """Add one or more judges' labels for samples already stored, in one transaction.

        With ``replace`` False (an upload) a label that would change a stored one, or a judge kind
        that differs from the stored one, is refused (``ConflictError``); with True the judges'
        labels on ``dataset`` are replaced by these. None (a job collecting labels, which owns them)
        writes as before: new labels added, changed ones updated."""
        with self.writing():
            if replace is not None:
                self._check_names(None, judges)
                self._check_label_changes(judges, labels, dataset, replace=replace)
                if replace:
                    self._replace_judges(judges, dataset)
            self._upsert_judges(judges, now())
            self._upsert_labels(labels, now())
        return len(labels)

    def judges(self, dataset: str | None = None) -> list[JudgeRow]:
        """Judges with labels (on the dataset), with their label counts."""
        # one scan of the labels (NOT INDEXED: walking the judge index and fetching each row is
        # twice as slow at the paper's 173k labels), aggregated before the join to judges
        where, params = ("WHERE l.sample_id IN (SELECT id FROM samples WHERE dataset = ?)", [dataset]) if dataset \
            else ("", [])
        return self.rows(
            "SELECT j.name, j.kind, j.notes, j.size_b, agg.labels, agg.a, agg.b, agg.tie, agg.with_prob,"
            " agg.both_orders, agg.consistent FROM judges j JOIN ("
            "  SELECT l.judge, COUNT(*) AS labels,"
            "  SUM(l.choice = 'A') AS a, SUM(l.choice = 'B') AS b, SUM(l.choice = 'tie') AS tie,"
            "  SUM(l.prob_a IS NOT NULL) AS with_prob,"
            "  SUM(l.verdict_ab IS NOT NULL AND l.verdict_ba IS NOT NULL) AS both_orders,"
            "  SUM(l.verdict_ab IS NOT NULL AND l.verdict_ab = l.verdict_ba) AS consistent"
            f"  FROM labels l NOT INDEXED {where} GROUP BY l.judge"
            ") agg ON agg.judge = j.name ORDER BY j.name",
            params,
        )

    def judge_names(self, dataset: str | None = None) -> list[str]:
        """Names of the judges with a label (on the dataset): one index probe per judge, no label scan."""
        where, params = (" AND l.sample_id IN (SELECT id FROM samples WHERE dataset = ?)", [dataset]) if dataset \
            else ("", [])
        return [r[0] for r in self.conn.execute(
            f"SELECT name FROM judges j WHERE EXISTS (SELECT 1 FROM labels l WHERE l.judge = j.name{where})"
            " ORDER BY name", params)]

    def labels(self, dataset: str | None = None, judges: list[str] | None = None) -> list[LabelRow]:
        sql = (
            "SELECT l.sample_id, l.judge, l.choice, l.prob_a, l.verdict_ab, l.verdict_ba, s.dataset"
            " FROM labels l JOIN samples s ON s.id = l.sample_id WHERE 1=1"
        )
        params: list[Any] = []
        if dataset:
            sql += " AND s.dataset = ?"
            params.append(dataset)
        if judges:
            sql += f" AND l.judge IN ({', '.join('?' * len(judges))})"
            params.extend(judges)
        return self.rows(sql, params)

    def choices(self, dataset: str, judge: str) -> dict[str, str]:
        """sample id -> the judge's choice (A, B, tie) on the dataset: primary-key probes, no join."""
        return dict(self.conn.execute(
            "SELECT sample_id, choice FROM labels WHERE judge = ?"
            " AND sample_id IN (SELECT id FROM samples WHERE dataset = ?)", (judge, dataset)))

    def fit_probs(self, dataset: str, judge: str, *, position: bool) -> dict[str, float]:
        """sample id -> the judge's P(A) as a fit takes it (``designs``' P, or with the position term
        P_ab: only a label without per-order verdicts, ``ONE_ORDER_SQL``), for labels that carry one."""
        return dict(self.conn.execute(
            "SELECT sample_id, prob_a FROM labels WHERE judge = ? AND prob_a IS NOT NULL"
            + (f" AND {ONE_ORDER_SQL}" if position else "")
            + " AND sample_id IN (SELECT id FROM samples WHERE dataset = ?)", (judge, dataset)))

    def sample_labels(self, sample_id: str) -> list[SampleLabelRow]:
        """Every judge's vote on one sample: choice, P(A), the verdicts in both orders, the judge's kind."""
        return self.rows(
            "SELECT l.judge, j.kind, l.choice, l.prob_a, l.verdict_ab, l.verdict_ba, l.strength_ab, l.strength_ba,"
            " l.source FROM labels l"
            " LEFT JOIN judges j ON j.name = l.judge WHERE l.sample_id = ? ORDER BY l.judge", [sample_id])

    def all_judge_names(self) -> list[str]:
        """Every stored judge's name, with labels or not."""
        return [r[0] for r in self.conn.execute("SELECT name FROM judges ORDER BY name")]

    def judge_kinds(self) -> list[JudgeKindRow]:
        """Every stored judge's kind and size (billions of parameters, when known)."""
        return self.rows("SELECT name, kind, size_b FROM judges")

    def judge_datasets(self) -> list[tuple[str, str]]:
        """(judge, dataset) for every dataset a judge labelled a sample of, by dataset."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT DISTINCT l.judge, s.dataset FROM samples s JOIN labels l ON l.sample_id = s.id ORDER BY s.dataset")]

    def judge_main_dataset(self, judge: str) -> str | None:
        """The dataset the judge labelled most samples of (None: no labels)."""
        row = self.conn.execute(
            "SELECT s.dataset, COUNT(*) AS n FROM labels l JOIN samples s ON s.id = l.sample_id WHERE l.judge = ?"
            " GROUP BY s.dataset ORDER BY n DESC LIMIT 1", (judge,)).fetchone()
        return row[0] if row else None

    def judge_verdicts(self, judge: str, dataset: str) -> list[tuple[str, str, str | None, str | None]]:
        """The judge's labels on the dataset as (sample id, choice, verdict A first, verdict B first)."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT l.sample_id, l.choice, l.verdict_ab, l.verdict_ba FROM labels l JOIN samples s ON s.id = l.sample_id"
            " WHERE l.judge = ? AND s.dataset = ?", (judge, dataset))]

    def packed_labels(self, dataset: str | None, judges: list[str] | None = None):
        """One scan of the labels (on ``dataset``; of ``judges``), grouped by judge in SQLite:
        (sorted judge names, each judge's sample ids, each judge's labels packed as choice * 8 +
        has probability * 4 + both orders known * 2 + same verdict in both, with choice A 2, tie 1,
        B 0; an int64 array each).

        Per judge, the sample ids come as one string and the packed labels as one list that numpy
        parses: a Python row per label (173k at the paper's scale) cost three times as much."""
        import numpy as np

        packed = ("(CASE l.choice WHEN 'A' THEN 2 WHEN 'B' THEN 0 ELSE 1 END) * 8 + (l.prob_a IS NOT NULL) * 4"
                  " + (l.verdict_ab IS NOT NULL AND l.verdict_ba IS NOT NULL) * 2"
                  " + (l.verdict_ab IS NOT NULL AND l.verdict_ab IS l.verdict_ba)")
        sql = f"SELECT l.judge, group_concat(l.sample_id, char(31)), group_concat({packed}) FROM labels l NOT INDEXED"
        where, params = [], []
        if dataset:
            where.append("l.sample_id IN (SELECT id FROM samples WHERE dataset = ?)")
            params.append(dataset)
        if judges:
            where.append(f"l.judge IN ({', '.join('?' * len(judges))})")
            params.extend(judges)
        if where:
            sql += " WHERE " + " AND ".join(where)
        groups = self.conn.execute(sql + " GROUP BY l.judge ORDER BY l.judge", params).fetchall()
        return ([g[0] for g in groups], [g[1].split("\x1f") for g in groups],
                [np.fromstring(g[2], sep=",", dtype=np.int64) for g in groups])

    def position_counts(self, judge: str, sample_ids: list[str] | None = None) -> tuple[int, int, int]:
        """(labels, labels with a verdict in both orders, those with the same verdict in both) of the
        judge (on ``sample_ids`` only, when given)."""
        n = both = same = 0
        chunks = [None] if sample_ids is None else [sample_ids[i:i + 500] for i in range(0, len(sample_ids), 500)]
        for chunk in chunks:
            where, params = "judge = ?", [judge]
            if chunk is not None:
                where += f" AND sample_id IN ({', '.join('?' * len(chunk))})"
                params += chunk
            row = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL), 0),"
                " COALESCE(SUM(verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL AND verdict_ab = verdict_ba), 0)"
                f" FROM labels WHERE {where}", params).fetchone()
            n, both, same = n + row[0], both + row[1], same + row[2]
        return n, both, same

    def order_counts(self, dataset: str | None = None, reference: str | None = None) -> list[tuple]:
        """Per judge with a verdict in either order (on ``dataset``), by name, one grouped read:
        (judge, verdicts A first with a reference choice, of them agreeing, the same B first,
        verdicts in all, verdicts for the first shown, for the second shown, ties)."""
        where, params = "", [reference]
        if dataset:
            where = " AND l.sample_id IN (SELECT id FROM samples WHERE dataset = ?)"
            params.append(dataset)
        return [tuple(r) for r in self.conn.execute(
            "SELECT l.judge,"
            " COALESCE(SUM(l.verdict_ab IS NOT NULL AND r.choice IS NOT NULL), 0), COALESCE(SUM(l.verdict_ab = r.choice), 0),"
            " COALESCE(SUM(l.verdict_ba IS NOT NULL AND r.choice IS NOT NULL), 0), COALESCE(SUM(l.verdict_ba = r.choice), 0),"
            " SUM(l.verdict_ab IS NOT NULL) + SUM(l.verdict_ba IS NOT NULL),"
            " SUM(l.verdict_ab = 'A') + SUM(l.verdict_ba = 'B'), SUM(l.verdict_ab = 'B') + SUM(l.verdict_ba = 'A'),"
            " SUM(l.verdict_ab = 'tie') + SUM(l.verdict_ba = 'tie')"
            " FROM labels l LEFT JOIN labels r ON r.sample_id = l.sample_id AND r.judge = ?"
            f" WHERE (l.verdict_ab IS NOT NULL OR l.verdict_ba IS NOT NULL){where} GROUP BY l.judge ORDER BY l.judge",
            params)]

    # ==================== features

    def _upsert_features(self, features: Iterable[Feature], ts: str) -> None:
        as_json = _json_memo()
        self.conn.executemany(
            "INSERT INTO features (sample_id, source, attribute, value, score_a, score_b, excluded, provenance, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(sample_id, source, attribute) DO UPDATE SET value = excluded.value,"
            "  score_a = excluded.score_a, score_b = excluded.score_b, excluded = excluded.excluded,"
            "  provenance = excluded.provenance",
            [
                (
                    f.sample_id,
                    f.source,
                    f.attribute,
                    int(f.value),
                    f.score_a,
                    f.score_b,
                    int(f.excluded),
                    as_json(f.provenance) if f.provenance else None,
                    ts,
                )
                for f in features
            ],
        )

    def write_features(self, features: list[Feature]) -> None:
        with self.writing():
            self._upsert_features(features, now())

    def feature_sources(self, dataset: str | None = None) -> list[FeatureSourceRow]:
        """The feature sets present, with how many samples each covers."""
        # distinct (sample, source) pairs straight from the covering primary key: 10x faster than
        # COUNT(DISTINCT) over the source index, which fetches every row for its sample id
        where, params = ("WHERE sample_id IN (SELECT id FROM samples WHERE dataset = ?)", [dataset]) if dataset \
            else ("", [])
        return self.rows(
            f"SELECT source, COUNT(*) AS samples FROM (SELECT DISTINCT sample_id, source FROM features {where})"
            " GROUP BY source ORDER BY samples DESC, source", params)

    def has_features(self, dataset: str, feature_source: str) -> bool:
        """Whether a sample of the dataset has features from the source (a probe of the primary key)."""
        return bool(self.scalar(
            "SELECT EXISTS (SELECT 1 FROM features WHERE source = ?"
            " AND sample_id IN (SELECT id FROM samples WHERE dataset = ?))", [feature_source, dataset]))

    def design(self, dataset: str, feature_source: str, *, scope: str | None = None,
               judges: list[str] | None = None, include_excluded: bool = False) -> "Design":
        """Feature matrix and labels of one scope (see ``designs``)."""
        return self.designs(dataset, feature_source, [scope or "all"], judges=judges,
                            include_excluded=include_excluded)[scope or "all"]

    def designs(self, dataset: str, feature_source: str, scopes: list[str], *, judges: list[str] | None = None,
                include_excluded: bool = False) -> dict[str, "Design"]:
        """Feature matrices and labels for fitting, per scope, from one read of the dataset.

        Rows: samples of the dataset in the scope (a scenario group, a query case, or "all") that
        have features from ``feature_source``, in dataset order; Y[i, j] = 1 when judge j preferred
        A, 0 for B, NaN for a tie or no label. Samples whose features are marked excluded (errors
        not checkable) are left out unless asked for. Judges default to every judge with a label
        on one of the samples."""
        import numpy as np
        import pandas as pd

        from . import catalogue

        keys = catalogue.attribute_keys()
        meta = pd.read_sql_query("SELECT id, position, scenario_group, cases, category FROM samples WHERE dataset = ?"
                                 " ORDER BY position", self.conn, params=[dataset]).set_index("id")
        # Every feature of the dataset as one integer, ((position << bits | attribute) * 4 + value + 1) * 2
        # + excluded, in one string that numpy parses: a row per feature (152k at the paper's scale)
        # cost three times as much. The attribute field is as wide as the catalogue needs, with its
        # all-ones value left for an attribute the catalogue no longer has (29 attributes: 5 bits,
        # 32: 6 bits; a fixed 5-bit field once folded a 32nd attribute into "unknown" and a 33rd into
        # the sample's position). CROSS JOIN keeps SQLite walking samples and probing the features'
        # primary key, not scanning the source index and probing samples once per feature.
        bits = len(keys).bit_length()  # 2 ** bits > len(keys): room for every index and "unknown"
        unknown = (1 << bits) - 1
        attr = "CASE f.attribute " + " ".join(f"WHEN ? THEN {i}" for i in range(len(keys))) + f" ELSE {unknown} END"
        (packed,) = self.conn.execute(
            f"SELECT group_concat(((s.position * {1 << bits} + {attr}) * 4 + f.value + 1) * 2 + f.excluded)"
            " FROM samples s CROSS JOIN features f ON f.sample_id = s.id AND f.source = ? WHERE s.dataset = ?",
            [*keys, feature_source, dataset]).fetchone()
        code = np.fromstring(packed, sep=",", dtype=np.int64) if packed else np.zeros(0, dtype=np.int64)
        pos, col, value, excluded = code >> (bits + 3), code >> 3 & unknown, (code >> 1 & 3) - 1, code & 1
        positions = np.unique(pos)  # of the samples with features, in dataset order
        in_order = meta["position"].to_numpy()
        ids_all = list(meta.index[np.isin(in_order, positions)])
        excluded_ids = set(meta.index[np.isin(in_order, np.unique(pos[excluded == 1]))])
        known = col < len(keys)  # an attribute the catalogue no longer has is not a column
        X_all = np.zeros((len(ids_all), len(keys)))
        X_all[np.searchsorted(positions, pos[known]), col[known]] = value[known]
        orders: dict[str, Any] = {}
        if judges is not None and not judges:  # features only (the simulator): no labels to read
            names: list[str] = []
            Y_all = np.empty((len(ids_all), 0))
        else:
            lab_sql = ("SELECT l.sample_id, l.judge, l.choice, l.verdict_ab, l.verdict_ba, l.prob_a,"
                       f" {ONE_ORDER_SQL} AS one_order FROM labels l"
                       " JOIN samples s ON s.id = l.sample_id WHERE s.dataset = ?")
            params: list[Any] = [dataset]
            if judges:
                lab_sql += f" AND l.judge IN ({', '.join('?' * len(judges))})"
                params.extend(judges)
            labs = pd.read_sql_query(lab_sql, self.conn, params=params)
            labs = labs[labs["sample_id"].isin(set(ids_all))]
            names = list(judges) if judges else sorted(labs["judge"].unique())
            # per presentation order (1 A, 0 B, 0.5 tie, NaN none): a label with no per-order verdicts
            # is taken as given with A shown first; one with only the B-first verdict has no A-first one
            code = {"A": 1.0, "B": 0.0, "tie": 0.5}
            single = labs["one_order"].astype(bool)
            coded = labs.assign(
                y=labs["choice"].map(code),
                ab=labs["verdict_ab"].map(code).where(~single, labs["choice"].map(code)),
                ba=labs["verdict_ba"].map(code),
                # the judge's P(A): for the combined choice, and for the A-first row where the label is that row
                p=labs["prob_a"], p_ab=labs["prob_a"].where(single))
            row_of = pd.Series(np.arange(len(ids_all)), index=ids_all)
            col_of = pd.Series(np.arange(len(names)), index=names)
            ri = coded["sample_id"].map(row_of).to_numpy()
            ci = coded["judge"].map(col_of).to_numpy()
            ok = ~(pd.isna(ri) | pd.isna(ci))
            ri, ci = ri[ok].astype(np.int64), ci[ok].astype(np.int64)
            for col in ("y", "ab", "ba", "p", "p_ab"):
                wide = np.full((len(ids_all), len(names)), np.nan)
                wide[ri, ci] = coded[col].to_numpy(dtype=float)[ok]
                orders[col] = wide
            Y_all = np.where(orders["y"] == 0.5, np.nan, orders["y"])
        groups = meta.loc[ids_all, "scenario_group"].to_numpy()
        own = meta.loc[ids_all, "category"].to_numpy()
        cases = [json.loads(c) if isinstance(c, str) and c else {} for c in meta.loc[ids_all, "cases"]]
        usable = np.array([include_excluded or i not in excluded_ids for i in ids_all], dtype=bool)
        out = {}
        for scope in scopes:
            if not scope or scope == "all":
                in_scope = np.ones(len(ids_all), dtype=bool)
            elif scope in catalogue.case_keys():
                in_scope = np.array([bool(c.get(scope)) for c in cases], dtype=bool)
            elif scope.startswith(CATEGORY_SCOPE):
                in_scope = own == scope[len(CATEGORY_SCOPE):]
            else:
                in_scope = groups == scope
            rows = in_scope & usable
            out[scope] = Design(sample_ids=[i for i, k in zip(ids_all, rows) if k], attributes=keys, X=X_all[rows],
                                judges=names, Y=Y_all[rows], excluded=int((in_scope & ~usable).sum()),
                                **{_DESIGN_FIELD[k]: v[rows] for k, v in orders.items()})
        return out

    def differing_counts(self, dataset: str, feature_source: str, scope: str | None = None) -> dict[str, int]:
        """Per attribute, how many samples of a scope (scenario group, query case, or "all") differ on it:
        the comparison feature from ``feature_source`` is not 0. Samples marked excluded are left out,
        as ``designs`` leaves them out of fitting (a sample's features are marked together: see
        ``features.resolve``). One aggregate query: the scope's samples first (CROSS JOIN fixes
        that order), then their features by primary key."""
        from . import catalogue

        sql = ("SELECT f.attribute, COUNT(*) FROM samples s CROSS JOIN features f"
               " ON f.sample_id = s.id AND f.source = ?"
               " WHERE s.dataset = ? AND f.value != 0 AND f.excluded = 0")
        params: list[Any] = [feature_source, dataset]
        if scope and scope != "all":
            if scope in catalogue.case_keys():
                sql += " AND json_extract(s.cases, '$.' || ?)"
            elif scope.startswith(CATEGORY_SCOPE):
                sql += " AND s.category = ?"
                scope = scope[len(CATEGORY_SCOPE):]
            else:
                sql += " AND s.scenario_group = ?"
            params.append(scope)
        return {a: int(n) for a, n in self.conn.execute(sql + " GROUP BY f.attribute", params)}

    def sample_features(self, sample_id: str, source: str | None = None) -> list[SampleFeatureRow]:
        """One sample's comparison features (all sources, or one), provenance decoded."""
        sql = ("SELECT source, attribute, value, score_a, score_b, excluded, provenance FROM features"
               " WHERE sample_id = ?")
        params: list[Any] = [sample_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = self.rows(sql + " ORDER BY source", params)
        for r in rows:
            r["provenance"] = json.loads(r["provenance"]) if r["provenance"] else {}
        return rows

    def feature_pairs(self, source_a: str, source_b: str, dataset: str | None = None) -> list[tuple[str, int, int]]:
        """(attribute, value in ``source_a``, value in ``source_b``) for every sample and attribute both
        feature sets cover (on ``dataset``), by attribute and sample."""
        sql = ("SELECT a.attribute, a.value, b.value FROM features a JOIN features b"
               " ON b.sample_id = a.sample_id AND b.attribute = a.attribute AND b.source = ?")
        params: list[Any] = [source_b]
        if dataset:
            sql += " JOIN samples s ON s.id = a.sample_id AND s.dataset = ?"
            params.append(dataset)
        sql += " WHERE a.source = ? ORDER BY a.attribute, a.sample_id"
        params.append(source_a)
        return [tuple(r) for r in self.conn.execute(sql, params)]

    def order_agreement(self, source: str, attribute: str) -> tuple[int, int]:
        """(features of the attribute annotated in both orders, those whose comparison has the same
        sign in both) in a feature set."""
        n, same = self.conn.execute(
            "SELECT COUNT(*), SUM(json_extract(provenance, '$.ab') = json_extract(provenance, '$.ba'))"
            " FROM features WHERE source = ? AND attribute = ? AND json_extract(provenance, '$.ab') IS NOT NULL",
            (source, attribute)).fetchone()
        return int(n), int(same or 0)

    def content_marks(self) -> tuple:
        """The largest rowid of features and of annotations: moves with every feature or request
        written (an annotation job adds those without touching samples, labels or profiles)."""
        return tuple(self.conn.execute(
            "SELECT (SELECT MAX(rowid) FROM features), (SELECT MAX(rowid) FROM annotations)").fetchone())

    # ==================== profiles

    def profiles(self, *, dataset: str | None = None, scope: str | None = None, judges: list[str] | None = None,
                 feature_source: str | None = None, method: str | None = None,
                 with_draws: bool = False, columns: list[str] | None = None) -> list[ProfileRow]:
        """Stored profiles, lists decoded (and draws as an array when asked for). ``columns``: only
        these (an index of what is stored needs no weights decoded: 561 profiles' JSON is 0.1 s)."""
        import numpy as np

        cols = ", ".join(columns) if columns else "*" if with_draws else \
            ", ".join(c for c in self.db["profiles"].columns_dict if c != "draws")
        sql, params = f"SELECT {cols} FROM profiles WHERE 1 = 1", []
        for name, value in (("dataset", dataset), ("scope", scope), ("feature_source", feature_source),
                            ("method", method)):
            if value is not None:
                sql += f" AND {name} = ?"
                params.append(value)
        if judges:
            sql += f" AND judge IN ({', '.join('?' * len(judges))})"
            params.extend(judges)
        rows = self.rows(sql + " ORDER BY dataset, scope, judge", params)
        for r in rows:
            for k in ("attributes", "mean", "sd", "lo", "hi", "p_pos", "rhat", "ess", "provenance"):
                if r.get(k):
                    r[k] = json.loads(r[k])
            if with_draws and r.get("draws") is not None:
                r["draws"] = np.frombuffer(r["draws"], dtype=np.float32).reshape(-1, len(r["attributes"]))
        return rows

    def save_profile(self, profile: dict[str, Any]) -> None:
        """Insert or replace one profile row (keys: the profiles columns; lists as Python lists)."""
        row = dict(profile)
        for k in ("attributes", "mean", "sd", "lo", "hi", "p_pos", "rhat", "ess", "provenance"):
            if k in row and row[k] is not None and not isinstance(row[k], str):
                row[k] = json.dumps(row[k])
        row.setdefault("created_at", now())
        cols = list(row)
        with self.writing():
            self.conn.execute(
                f"INSERT INTO profiles ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                " ON CONFLICT(dataset, scope, judge, feature_source, method) DO UPDATE SET "
                + ", ".join(f"{k} = excluded.{k}" for k in cols),
                [row[k] for k in cols],
            )

    # ==================== annotations (LLM requests, keyed by content hash)

    def record_annotation(self, row: dict[str, Any]) -> None:
        """Store one LLM request's outcome the moment it returns (its own transaction). An outcome
        that replaces an earlier failure of the same request carries that failure's usage, cost and
        attempts with its own: the failed attempts were paid for, and the spend must say so."""
        row = {**row, "created_at": row.get("created_at") or now()}
        for k in ("params", "parsed"):  # JSON always, so a plain-text answer reads back as text
            if row.get(k) is not None:
                row[k] = json.dumps(row[k], sort_keys=True)
        with self.writing():
            earlier = self.conn.execute(
                "SELECT prompt_tokens, completion_tokens, cost, attempts FROM annotations WHERE id = ? AND status = 'failed'",
                (row.get("id"),)).fetchone()
            if earlier:
                for k, v in zip(("prompt_tokens", "completion_tokens", "cost", "attempts"), earlier):
                    if v is not None:
                        row[k] = (row.get(k) or 0) + v
            cols = list(row)
            self.conn.execute(
                f"INSERT OR REPLACE INTO annotations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[k] for k in cols],
            )

    def cached_annotations(self, keys: list[str]) -> dict[str, Any]:
        """Parsed results of the requests among ``keys`` (request keys) that already succeeded,
        for whichever sample asked first: identical requests are paid for once."""
        out = {}
        for key, parsed in _chunked_in(
            self.conn, "SELECT request_key, parsed FROM annotations WHERE status = 'ok' AND request_key IN ({})", keys
        ):
            out[key] = json.loads(parsed) if parsed else None
        return out

    def reuse_annotation(self, request_key: str, sample_id: str, row_id: str) -> None:
        """Record, for another sample, an answer already paid for (cost 0, marked reused)."""
        with self.writing():
            self.conn.execute(
                "INSERT OR IGNORE INTO annotations (id, request_key, sample_id, annotator, prompt_version, step,"
                " orientation, params, raw, parsed, prompt_tokens, completion_tokens, cost, latency_s, status, error,"
                " attempts, reused, job_id, created_at)"
                " SELECT ?, request_key, ?, annotator, prompt_version, step, orientation, params, raw, parsed, 0, 0, 0,"
                " 0, status, NULL, 0, 1, job_id, ? FROM annotations WHERE request_key = ? AND status = 'ok' LIMIT 1",
                (row_id, sample_id, now(), request_key),
            )

    def annotations_for(self, sample_id: str) -> list[AnnotationRow]:
        rows = self.rows(
            "SELECT id, annotator, prompt_version, step, orientation, parsed, status, error, cost, latency_s,"
            " prompt_tokens, completion_tokens, created_at FROM annotations WHERE sample_id = ? ORDER BY created_at",
            [sample_id],
        )
        for r in rows:
            r["parsed"] = json.loads(r["parsed"]) if r["parsed"] else None
        return rows

    def failed_attempts(self, keys: list[str]) -> dict[str, int]:
        """How many times each of ``keys`` failed for good (all samples' rows together)."""
        out: dict[str, int] = {}
        for key, n in _chunked_in(self.conn, "SELECT request_key, SUM(attempts) FROM annotations WHERE status = 'failed'"
                                             " AND request_key IN ({}) GROUP BY request_key", keys):
            out[key] = int(n or 0)
        return out

    def insert_annotations(self, rows: list[dict[str, Any]], created_at: str | None = None) -> None:
        """Store finished requests as they are (the demo's ready-made annotations); a request key
        already stored is kept."""
        if not rows:
            return
        cols = list(rows[0]) + ["created_at"]
        ts = created_at or now()
        with self.writing():
            self.conn.executemany(
                f"INSERT OR IGNORE INTO annotations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(row[c] for c in cols[:-1]) + (ts,) for row in rows])

    # ==================== llm_dialects

    def llm_dialect(self, base_url: str | None, model: str) -> dict[str, Any] | None:
        """The stored probe result for an endpoint (base URL "" is OpenAI itself), or None."""
        row = self.conn.execute("SELECT dialect FROM llm_dialects WHERE base_url = ? AND model = ?",
                                (base_url or "", model)).fetchone()
        return json.loads(row[0]) if row else None

    def save_llm_dialect(self, base_url: str | None, model: str, dialect: dict[str, Any]) -> None:
        with self.writing():
            self.conn.execute("INSERT OR REPLACE INTO llm_dialects (base_url, model, dialect, probed_at)"
                              " VALUES (?, ?, ?, ?)", (base_url or "", model, json.dumps(dialect, sort_keys=True), now()))

    def forget_llm_dialect(self, base_url: str | None, model: str) -> None:
        """Probe the endpoint again next time (a server restarted with other options)."""
        with self.writing():
            self.conn.execute("DELETE FROM llm_dialects WHERE base_url = ? AND model = ?", (base_url or "", model))

    # ==================== llm_batches, llm_batch_requests (batch mode: core/batch.py)

    def batch_states(self, keys: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
        """For each of ``keys`` in a batch: the state that matters most (a result waiting to be
        recorded, else still sent), with the result line and error."""
        rank = {"answered": 0, "errored": 1, "sent": 2}
        out: dict[str, tuple[str, str | None, str | None]] = {}
        for key, state, result, error in _chunked_in(
                self.conn, "SELECT request_key, state, result, error FROM llm_batch_requests"
                " WHERE state IN ('answered', 'errored', 'sent') AND request_key IN ({})", keys):
            if key not in out or rank[state] < rank[out[key][0]]:
                out[key] = (state, result, error)
        return out

    def mark_batch_recorded(self, key: str) -> None:
        with self.writing():
            self.conn.execute("UPDATE llm_batch_requests SET state = 'recorded', result = NULL"
                              " WHERE request_key = ? AND state IN ('answered', 'errored')", (key,))

    def add_llm_batch(self, row: dict[str, Any], requests: list[tuple[str, str]]) -> None:
        """Record a written batch file and its requests (key, sample id), state 'sent', in one
        transaction; the same file again (same id) changes nothing."""
        ts = now()
        with self.writing():
            if self.conn.execute("SELECT 1 FROM llm_batches WHERE id = ?", (row["id"],)).fetchone():
                return
            row = {**row, "created_at": ts, "updated_at": ts}
            cols = list(row)
            self.conn.execute(f"INSERT INTO llm_batches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                              [row[c] for c in cols])
            self.conn.executemany("INSERT OR REPLACE INTO llm_batch_requests (batch_id, request_key, sample_id, state)"
                                  " VALUES (?, ?, ?, 'sent')", [(row["id"], k, sid) for k, sid in requests])

    def update_llm_batch(self, batch_id: str, **cols: Any) -> None:
        cols["updated_at"] = now()
        with self.writing():
            self.conn.execute(f"UPDATE llm_batches SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
                              [*cols.values(), batch_id])

    def llm_batches(self, *, statuses: tuple[str, ...] | None = None, base_url: str | None = None,
                    model: str | None = None, job_id: int | None = None) -> list[LlmBatchRow]:
        where, params = [], []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += list(statuses)
        if base_url is not None:
            where.append("base_url = ?")
            params.append(base_url)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        return self.rows("SELECT * FROM llm_batches" + (f" WHERE {' AND '.join(where)}" if where else "")
                         + " ORDER BY created_at, id", params)

    def batch_request_keys(self, batch_id: str, state: str = "sent") -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT request_key FROM llm_batch_requests WHERE batch_id = ? AND state = ?", (batch_id, state))}

    def batch_of_keys(self, keys: list[str]) -> dict[str, str]:
        """The batch each of ``keys`` was last sent in (any state), for ingesting a runner's file."""
        out: dict[str, str] = {}
        for key, batch in _chunked_in(self.conn, "SELECT b.request_key, b.batch_id FROM llm_batch_requests b"
                                                 " JOIN llm_batches l ON l.id = b.batch_id WHERE b.request_key IN ({})"
                                                 " ORDER BY l.created_at", keys):
            out[key] = batch
        return out

    def stage_batch_results(self, batch_id: str, results: list[tuple[str, str, str | None, str | None]]) -> None:
        """Store result lines the moment they are read: (request key, state 'answered' or
        'errored', the line, the error). Only requests still waiting in that batch take them."""
        with self.writing():
            self.conn.executemany(
                "UPDATE llm_batch_requests SET state = ?, result = ?, error = ? WHERE batch_id = ? AND request_key = ?"
                " AND state IN ('sent', 'dropped')", [(st, line, err, batch_id, key) for key, st, line, err in results])

    def drop_batch(self, batch_id: str, status: str = "superseded") -> None:
        """A batch file that will not come back (superseded by a newer file for another runner):
        its requests waiting in it may be planned again."""
        with self.writing():
            self.conn.execute("UPDATE llm_batch_requests SET state = 'dropped' WHERE batch_id = ? AND state = 'sent'",
                              (batch_id,))
            self.conn.execute("UPDATE llm_batches SET status = ?, updated_at = ? WHERE id = ?", (status, now(), batch_id))

    # ==================== jobs, job_runs (the job records of core/jobs.py)

    def job_row(self, job_id: int) -> JobRow | None:
        """The job's row (params as stored: JSON text), or None."""
        rows = self.rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        return rows[0] if rows else None

    def job_rows(self, limit: int = 50) -> list[JobRow]:
        """The latest jobs, newest first."""
        return self.rows("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", [limit])

    def job_by_key(self, key: str, legacy: str | None = None) -> JobRow | None:
        """The job stored under ``key``, else under ``legacy`` (a key of an older params form)."""
        rows = self.rows("SELECT * FROM jobs WHERE key IN (?, ?) ORDER BY key = ? DESC LIMIT 1",
                         [key, legacy if legacy is not None else key, key])
        return rows[0] if rows else None

    def insert_job(self, key: str, kind: str, params: str, *, total: int = 0,
                   budget: float | None = None) -> JobRow:
        """A new queued job (``params``: JSON text)."""
        with self.writing():
            self.conn.execute(
                "INSERT INTO jobs (key, kind, status, params, total, budget, created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                (key, kind, params, total, budget, now()))
            return self.rows("SELECT * FROM jobs WHERE key = ?", [key])[0]

    def job_runs(self, job_id: int) -> list[JobRunRow]:
        """The job's archived runs, oldest first."""
        return self.rows("SELECT * FROM job_runs WHERE job_id = ? ORDER BY run", [job_id])

    def job_run_counts(self) -> dict[int, int]:
        """Runs per job, the current one included (a job never started counts 0)."""
        out = {r[0]: r[1] for r in self.conn.execute("SELECT job_id, COUNT(*) FROM job_runs GROUP BY job_id")}
        for (job_id,) in self.conn.execute("SELECT id FROM jobs WHERE started_at IS NOT NULL"):
            out[job_id] = out.get(job_id, 0) + 1
        return out

    def job_activity(self) -> tuple:
        """A cheap fingerprint of job activity: the annotations' largest rowid, their count of
        successes, the largest job id."""
        return tuple(self.conn.execute(
            "SELECT (SELECT MAX(rowid) FROM annotations), (SELECT COUNT(*) FROM annotations WHERE status = 'ok'),"
            " (SELECT MAX(id) FROM jobs)").fetchone())

    def job_failures(self, job_id: int, limit: int = 5) -> list[FailedRequestRow]:
        """The job's latest requests that failed for good, newest first."""
        return self.rows(
            "SELECT sample_id, step, orientation, error, attempts, created_at FROM annotations"
            " WHERE job_id = ? AND status = 'failed' ORDER BY created_at DESC, rowid DESC LIMIT ?", [job_id, limit])

    def job_spent(self, job_id: int) -> float:
        """The summed cost of the job's stored requests, over all its runs."""
        return float(self.scalar("SELECT COALESCE(SUM(cost), 0) FROM annotations WHERE job_id = ?", [job_id]) or 0.0)

    def job_state(self, job_id: int) -> tuple[str, int | None]:
        """(status, worker pid) of a job: the cheap read a running worker polls."""
        status, pid = self.conn.execute("SELECT status, worker_pid FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return status, pid

    def archive_job_run(self, job_id: int, *, status: str, total: int, done: int, failed: int, cost: float,
                        budget: float | None, message: str | None, error: str | None, worker_pid: int | None,
                        started_at: str | None, finished_at: str | None) -> None:
        """Archive the job's current run as its next ``job_runs`` row; ``cost`` is the job's cost
        over all runs, of which the run keeps what the earlier runs did not spend."""
        with self.writing():
            n, before = self.conn.execute(
                "SELECT COALESCE(MAX(run), 0), COALESCE(SUM(cost), 0) FROM job_runs WHERE job_id = ?",
                (job_id,)).fetchone()
            self.conn.execute(
                "INSERT INTO job_runs (job_id, run, status, total, done, failed, cost, budget, message, error, worker_pid,"
                " started_at, finished_at, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, n + 1, status, total, done, failed, round(max(0.0, cost - before), 8), budget, message,
                 error, worker_pid, started_at, finished_at, now()))

    def requeue_job(self, job_id: int, *, total: int | None = None, message: str = "queued again") -> None:
        """Mark the job queued for a new run: counts, error, worker and times cleared."""
        with self.writing():
            self.conn.execute(
                "UPDATE jobs SET status = 'queued', total = COALESCE(?, total), done = 0, failed = 0, message = ?,"
                " error = NULL, worker_pid = NULL, heartbeat_at = NULL, started_at = NULL, finished_at = NULL"
                " WHERE id = ?", (total, message, job_id))

    def cancel_job(self, job_id: int) -> None:
        """Mark a queued, running or paused job cancelled (a running one's worker writes finished_at)."""
        with self.writing():
            self.conn.execute(
                "UPDATE jobs SET status = 'cancelled', message = 'cancelled by user',"
                " finished_at = CASE WHEN status = 'running' THEN NULL ELSE ? END"
                " WHERE id = ? AND status IN ('queued', 'running', 'paused')", (now(), job_id))

    def claim_job(self, job_id: int, pid: int, *, status: str, heartbeat_at: str | None) -> bool:
        """Compare-and-set: the job becomes running under ``pid`` only if it is still in ``status``
        with this heartbeat (nobody claimed it meanwhile)."""
        with self.writing():
            ts = now()
            cur = self.conn.execute(
                "UPDATE jobs SET status = 'running', worker_pid = ?, heartbeat_at = ?, started_at = COALESCE(started_at, ?),"
                " error = NULL WHERE id = ? AND status = ? AND COALESCE(heartbeat_at, '') = COALESCE(?, '')",
                (pid, ts, ts, job_id, status, heartbeat_at))
        return cur.rowcount == 1

    def update_job(self, job_id: int, *, owner: int | None = None, **cols: Any) -> None:
        """Write job columns; with ``owner``, only while that worker pid still holds the job."""
        sets = ", ".join(f"{k} = ?" for k in cols)
        guard, extra = (" AND worker_pid = ?", [owner]) if owner is not None else ("", [])
        with self.writing():
            self.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?{guard}", [*cols.values(), job_id, *extra])

    def beat_job(self, job_id: int, owner: int | None) -> bool:
        """Refresh a running job's heartbeat while ``owner`` holds it; False when the store stayed
        busy beyond the timeout (the caller tries again at its next beat)."""
        try:
            with self.writing():
                self.conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'"
                                  " AND worker_pid IS ?", (now(), job_id, owner))
        except sqlite3.OperationalError:
            return False
        return True

    def swap_job_worker(self, job_id: int, expected: int | None, pid: int | None) -> bool:
        """Compare-and-set a queued job's worker pid from ``expected`` to ``pid``."""
        with self.writing():
            cur = self.conn.execute(
                "UPDATE jobs SET worker_pid = ? WHERE id = ? AND status = 'queued' AND worker_pid IS ?",
                (pid, job_id, expected))
        return cur.rowcount == 1

    # ==================== deleting (a dataset, judge, feature set or profile, with what goes with it)

    def _delete_where(self, kind: str, name: str, dataset: str | None) -> dict[str, tuple[str, list[Any]]]:
        """Per table, the WHERE clause (and parameters) of the rows a deletion removes."""
        if kind == "dataset":
            in_ds = ("sample_id IN (SELECT id FROM samples WHERE dataset = ?)", [name])
            return {"labels": in_ds, "features": in_ds, "annotations": in_ds,
                    "profiles": ("dataset = ?", [name]), "samples": ("dataset = ?", [name]),
                    "datasets": ("name = ?", [name])}
        scoped = (" AND sample_id IN (SELECT id FROM samples WHERE dataset = ?)", [dataset]) if dataset else ("", [])
        pscoped = (" AND dataset = ?", [dataset]) if dataset else ("", [])
        if kind == "judge":
            out = {"labels": ("judge = ?" + scoped[0], [name, *scoped[1]]),
                   "profiles": ("judge = ?" + pscoped[0], [name, *pscoped[1]])}
            # the judge itself goes when no label of it is left elsewhere
            out["judges"] = ("name = ? AND NOT EXISTS (SELECT 1 FROM labels WHERE judge = ?)", [name, name])
            return out
        if kind == "features":
            return {"features": ("source = ?" + scoped[0], [name, *scoped[1]]),
                    "profiles": ("feature_source = ?" + pscoped[0], [name, *pscoped[1]])}
        if kind == "profile":
            return {"profiles": ("id = ?", [int(name)])}
        raise ValueError(f"cannot delete a {kind!r}: choose one of {', '.join(DELETABLE)}")

    def delete_plan(self, kind: str, name: str, *, dataset: str | None = None) -> dict[str, int]:
        """What ``delete`` would remove, per table (the confirmation shows this). ValueError when
        there is no such thing, or when a job on it is queued or running."""
        if kind == "dataset" and not self.scalar("SELECT 1 FROM datasets WHERE name = ?", [name]):
            known = [r[0] for r in self.conn.execute("SELECT name FROM datasets ORDER BY name")]
            raise ValueError(f"no dataset {name!r}" + (f" (datasets: {', '.join(known)})" if known else ""))
        if kind == "judge" and not self.scalar("SELECT 1 FROM judges WHERE name = ?", [name]):
            raise ValueError(f"no judge {name!r}")
        if kind == "profile":
            try:
                int(name)
            except (TypeError, ValueError):
                raise ValueError(f"a profile is named by its id (a number), not {name!r}") from None
        where = self._delete_where(kind, name, dataset)
        counts = {}
        for table, (clause, params) in where.items():
            if table == "judges":
                counts[table] = int(bool(self.scalar(
                    "SELECT 1 FROM judges WHERE name = ? AND NOT EXISTS (SELECT 1 FROM labels WHERE judge = ?"
                    " AND NOT (" + where["labels"][0] + "))", [name, name, *where["labels"][1]])))
            else:
                counts[table] = int(self.scalar(f"SELECT COUNT(*) FROM {table} WHERE {clause}", params))
        if kind == "dataset":
            counts["judges"] = int(self.scalar(
                "SELECT COUNT(*) FROM judges j WHERE EXISTS (SELECT 1 FROM labels l WHERE l.judge = j.name AND "
                + where["labels"][0] + ") AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.judge = j.name AND NOT "
                + where["labels"][0] + ")", [*where["labels"][1], *where["labels"][1]]))
        if not any(counts.values()):
            what = {"features": "feature set", "profile": "profile"}.get(kind, kind)
            raise ValueError(f"no {what} {name!r}" + (f" on dataset {dataset!r}" if dataset else "") + ": nothing to delete")
        busy = self.rows("SELECT id, kind, params FROM jobs WHERE status IN ('queued', 'running')")
        for job in busy:
            params = json.loads(job["params"] or "{}")
            if name in (params.get("dataset"), params.get("judge"), params.get("features")) or (
                    kind == "judge" and name in (params.get("judges") or [])):
                raise ValueError(f"job {job['id']} ({job['kind']}) is {name!r}'s and still queued or running; "
                                 "cancel it first")
        return counts

    def backup_path(self, reason: str) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return self.path.with_name(f"{self.path.stem}.before-{reason}-{stamp}.db")

    def delete(self, kind: str, name: str, *, dataset: str | None = None,
               backup: bool = True) -> tuple[dict[str, int], Path | None]:
        """Delete a dataset (its samples, labels, features, annotations, profiles), a judge (its
        labels and profiles, on ``dataset`` or everywhere; the judge goes with its last label), a
        feature set (its features and the profiles fitted on it, on ``dataset`` or everywhere) or a
        profile (by id), in one transaction, after a backup of the whole store beside it
        (``<store>.before-delete-<time>.db``). Returns the rows removed per table and the backup."""
        plan = self.delete_plan(kind, name, dataset=dataset)
        copy = None
        if backup:
            copy = self.backup_path("delete")
            _copy(self.conn, copy)
        where = self._delete_where(kind, name, dataset)
        removed = {}
        with self.writing():
            touched = [r[0] for r in self.conn.execute(
                f"SELECT DISTINCT judge FROM labels WHERE {where['labels'][0]}", where["labels"][1])] \
                if "labels" in where else []
            for table, (clause, params) in where.items():  # children first: labels ... datasets
                removed[table] = self.conn.execute(f"DELETE FROM {table} WHERE {clause}", params).rowcount
            uploads = []
            if kind == "dataset":  # finished jobs on the dataset go with it (their history is its)
                mine = [r for r in self.rows("SELECT id, kind, params FROM jobs")
                        if json.loads(r["params"] or "{}").get("dataset") == name]
                ids = [r["id"] for r in mine]
                uploads = [Path(json.loads(r["params"])["path"]) for r in mine
                           if r["kind"] == "import" and json.loads(r["params"]).get("path")]
                if ids:
                    marks = ", ".join("?" * len(ids))
                    self.conn.execute(f"DELETE FROM job_runs WHERE job_id IN ({marks})", ids)
                    removed["jobs"] = self.conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids).rowcount
            if kind == "dataset" and touched:  # a judge whose every label was on the dataset goes too
                marks = ", ".join("?" * len(touched))
                removed["judges"] = self.conn.execute(
                    f"DELETE FROM judges WHERE name IN ({marks}) AND NOT EXISTS"
                    " (SELECT 1 FROM labels WHERE judge = judges.name)", touched).rowcount
        folder = (self.path.resolve().parent / "uploads").resolve()
        for upload in uploads:  # the files its import jobs read (kept beside the store) go too
            if upload.resolve().parent == folder and not self.scalar(
                    "SELECT 1 FROM jobs WHERE params LIKE ?", [f"%{upload.name}%"]):
                upload.unlink(missing_ok=True)
                removed["uploads"] = removed.get("uploads", 0) + 1
        del plan
        return removed, copy

    # ==================== experiments (core/experiment.py): settings, provenance, result

    _EXPERIMENT_JSON = ("spec", "result", "provenance")

    def add_experiment(self, name: str, spec: dict[str, Any], provenance: dict[str, Any]) -> int:
        with self.writing():
            cur = self.conn.execute(
                "INSERT INTO experiments (name, status, spec, provenance, created_at) VALUES (?, 'created', ?, ?, ?)",
                (name, json.dumps(spec, sort_keys=True), json.dumps(provenance, sort_keys=True), now()))
            return int(cur.lastrowid)

    def update_experiment(self, experiment_id: int, **cols: Any) -> None:
        for k in self._EXPERIMENT_JSON:
            if k in cols and cols[k] is not None and not isinstance(cols[k], str):
                cols[k] = json.dumps(cols[k], sort_keys=True, allow_nan=True)
        with self.writing():
            self.conn.execute(f"UPDATE experiments SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
                              [*cols.values(), experiment_id])

    def experiment(self, experiment_id: int) -> ExperimentRow | None:
        rows = self.rows("SELECT * FROM experiments WHERE id = ?", [experiment_id])
        return self._experiment_row(rows[0]) if rows else None

    def experiments(self, limit: int = 100) -> list[ExperimentRow]:
        return [self._experiment_row(r) for r in self.rows("SELECT * FROM experiments ORDER BY id DESC LIMIT ?",
                                                           [limit])]

    def _experiment_row(self, r: dict[str, Any]) -> ExperimentRow:
        for k in self._EXPERIMENT_JSON:
            r[k] = json.loads(r[k]) if r.get(k) else None
        return ExperimentRow(**r)

    def experiment_labels(self, dataset: str, judge: str) -> list[ExperimentLabelRow]:
        """The judge's labels on an experiment's pairs, with each pair's arm (``model_a``) and query."""
        return [ExperimentLabelRow(**r) for r in self.rows(
            "SELECT s.id AS sample_id, s.model_a, s.source_id, l.choice, l.prob_a FROM samples s"
            " JOIN labels l ON l.sample_id = s.id AND l.judge = ? WHERE s.dataset = ? ORDER BY s.position",
            [judge, dataset])]

    def experiment_features(self, dataset: str, source: str) -> list[ExperimentFeatureRow]:
        """Comparison features of an experiment's pairs: (sample_id, model_a, source_id, attribute, value)."""
        return [ExperimentFeatureRow(**r) for r in self.rows(
            "SELECT s.id AS sample_id, s.model_a, s.source_id, f.attribute, f.value FROM samples s"
            " JOIN features f ON f.sample_id = s.id AND f.source = ? WHERE s.dataset = ? ORDER BY s.position",
            [source, dataset])]


#: the scenario filter value for samples without a scenario group yet
UNCLASSIFIED = "(unclassified)"
#: the category filter value for samples without a category of the user's own
UNCATEGORISED = "(no category)"
#: a fit scope made of one of the user's own categories: ``category:<name>``
CATEGORY_SCOPE = "category:"


def category_scope(category: str) -> str:
    """The fit scope of the samples in one of the user's own categories."""
    return CATEGORY_SCOPE + category


@dataclass(frozen=True)
class SampleFilter:
    """Which samples the Samples page lists (``Store.browse``); every field optional, all must hold.

    ``scenario``: a scenario group (``UNCLASSIFIED`` for none yet); ``case``: a query case key;
    ``category``: the user's own category from the data (``UNCATEGORISED`` for none);
    ``judge``: samples that judge labelled (its choice comes with each row); ``disagree``: two or
    more judges whose non-tie choices on the sample differ; ``attributes``: samples whose comparison
    feature from ``feature_source`` is non-zero on every one of them (``direction`` "A": A better
    on each, "B": B better on each). Samples whose features are marked excluded (errors not
    checkable) are left out of the attribute filter, as fitting leaves them out, unless
    ``include_excluded``. ``text``: full-text search; rows then come best match first."""

    dataset: str | None = None
    scenario: str | None = None
    case: str | None = None
    judge: str | None = None
    category: str | None = None
    disagree: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    feature_source: str | None = None
    direction: str | None = None
    include_excluded: bool = False
    text: str | None = None

    def shown_judges(self) -> list[str]:
        """The judges whose choices come with each row: the judge, then the disagreeing ones."""
        return list(dict.fromkeys(([self.judge] if self.judge else []) + list(self.disagree)))


def _without_dataset(f: SampleFilter) -> SampleFilter:
    from dataclasses import replace

    return replace(f, dataset=None)


@dataclass
class Design:
    sample_ids: list[str]
    attributes: list[str]
    X: Any  # (n, d) comparison features
    judges: list[str]
    Y: Any  # (n, J): 1 = A preferred, 0 = B, NaN = tie or no label
    excluded: int = 0  # samples left out because their errors could not be checked
    # the same with ties as 0.5 (the combined choice), and per presentation order: Y_ab the verdict
    # with A shown first (a label without per-order verdicts counts as that), Y_ba with B first
    Y_y: Any = None
    Y_ab: Any = None
    Y_ba: Any = None
    # the judges' own P(A) (labels.prob_a; NaN where none): P of the combined choice, P_ab of the
    # A-first row where that row is the label itself (no per-order verdicts), NaN elsewhere
    P: Any = None
    P_ab: Any = None


#: A label without per-order verdicts: it is the verdict as shown, A first, so it is the A-first row of a fit with
#: the position term, its choice (``Design.Y_ab``) and its P(A) (``Design.P_ab``); a two-order label's P(A) pools
#: both orders and fits neither row. One rule for ``designs`` and ``fit_probs`` (the simulator recomputes a soft
#: fit's input key from it).
ONE_ORDER_SQL = "(verdict_ab IS NULL AND verdict_ba IS NULL)"

_DESIGN_FIELD = {"y": "Y_y", "ab": "Y_ab", "ba": "Y_ba", "p": "P", "p_ab": "P_ab"}


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]
    datasets: list[DatasetRow]
    scenarios: list[ScenarioCountRow]
    judges: list[JudgeRow]


def fts_query(text: str) -> str:
    """User text -> a safe FTS5 query: every word quoted, all words required."""
    words = [w for w in "".join(ch if ch.isalnum() else " " for ch in text).split() if w]
    return " ".join(f'"{w}"' for w in words)


class RestoreError(ValueError):
    """The file given to restore is not a store this version can use; nothing was changed."""


def _copy(src: sqlite3.Connection, dest_path: Path) -> None:
    """Online backup of ``src`` into a new self-contained file (rollback journal, no -wal beside it)."""
    part = dest_path.with_name(dest_path.name + ".part")
    part.unlink(missing_ok=True)
    target = sqlite3.connect(str(part))
    try:
        src.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        target.close()
    part.replace(dest_path)


def export_store(path: str | Path, dest: str | Path, *, overwrite: bool = False) -> Path:
    """A consistent copy of the store while the app and workers keep reading and writing.

    SQLite's online backup copies a single snapshot, so a copy is never half of one write. The
    copy is one file (no -wal) that ``restore_store`` or any SQLite tool can open. The store holds
    no API keys, so neither does the copy."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; choose another name, or overwrite it (--overwrite)")
    if dest.resolve() == Path(path).resolve():
        raise ValueError("the export must go to a different file than the store")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Store(path) as store:
        _copy(store.conn, dest)
    return dest


def check_export(source: str | Path) -> dict[str, int]:
    """Validate a file for restore (readable SQLite, intact, our schema, not from a newer version);
    returns its table counts. Raises RestoreError naming what is wrong; never writes to it."""
    source = Path(source)
    if not source.is_file():
        raise RestoreError(f"{source}: no such file")
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if ok != "ok":
                raise RestoreError(f"{source}: damaged SQLite file ({ok})")
            missing = {"_sqlite_migrations", "datasets", "samples", "labels", "profiles"} - tables
            if missing:
                raise RestoreError(f"{source}: not a prefdissect store (no {', '.join(sorted(missing))} table)")
            applied = {r[0] for r in conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATIONS.name])}
            known = {m.name for m in MIGRATIONS._migrations}
            newer = applied - known
            if newer:
                raise RestoreError(f"{source}: written by a newer version (migrations {', '.join(sorted(newer))})")
            differences = schema_differences(conn, applied)
            if differences:
                shown = "; ".join(differences[:10]) + (f"; and {len(differences) - 10} more"
                                                         if len(differences) > 10 else "")
                raise RestoreError(f"{source}: its schema is not the one its migrations make: {shown}")
            return {t: conn.execute(f"SELECT COUNT(*) FROM [{t}]").fetchone()[0]
                    for t in ("datasets", "samples", "judges", "labels", "profiles") if t in tables}
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise RestoreError(f"{source}: not an SQLite database ({e})") from None


def snapshot_meta(image: bytes) -> dict[str, str] | None:
    """The meta table of a ``Store.snapshot`` image, or None when the bytes are not one."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(image)
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def _schema(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The shape of a database: every table's columns and foreign keys, every index's table,
    uniqueness and columns, every trigger's and view's SQL (whitespace-normalised)."""
    out: dict[str, dict[str, Any]] = {"table": {}, "index": {}, "trigger": {}, "view": {}}
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                        " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
    for kind, name, table, sql in rows:
        if kind == "table":
            cols = [tuple(r[1:6]) for r in conn.execute(f"PRAGMA table_xinfo([{name}])")]
            fks = sorted(tuple(r[2:5]) for r in conn.execute(f"PRAGMA foreign_key_list([{name}])"))
            out["table"][name] = (cols, fks)
        elif kind == "index":
            cols = [r[2] for r in conn.execute(f"PRAGMA index_info([{name}])")]
            out["index"][name] = (table, " ".join((sql or "").split()).upper().startswith("CREATE UNIQUE"), cols)
        elif kind in ("trigger", "view"):
            out[kind][name] = " ".join((sql or "").split())
    return out


def schema_differences(conn: sqlite3.Connection, applied: set[str]) -> list[str]:
    """How the schema of ``conn`` differs from the one its applied migrations make (empty: none).

    The reference is built by applying the same migrations, in order, to an empty database in
    memory, so a reshaped table, a missing or foreign index, trigger or view is named."""
    order = [m.name for m in MIGRATIONS._migrations]
    missing = [n for n in order[: max((order.index(a) for a in applied if a in order), default=-1) + 1]
               if n not in applied]
    if missing:
        return [f"migrations {', '.join(missing)} were skipped"]
    reference = sqlite_utils.Database(memory=True)
    try:
        stop = next((n for n in order if n not in applied), None)
        MIGRATIONS.apply(reference, stop_before=stop)
        want = _schema(reference.conn)
    finally:
        reference.close()
    have = _schema(conn)
    out = []
    for kind in ("table", "index", "trigger", "view"):
        for name in sorted(set(want[kind]) | set(have[kind])):
            if name not in have[kind]:
                out.append(f"{kind} {name} is missing")
            elif name not in want[kind]:
                out.append(f"{kind} {name} is not ours")
            elif have[kind][name] != want[kind][name]:
                if kind == "table":
                    (hc, hf), (wc, wf) = have[kind][name], want[kind][name]
                    what = "columns" if hc != wc else "foreign keys"
                    hn, wn = ([c[0] for c in hc], [c[0] for c in wc]) if hc != wc else (hf, wf)
                    out.append(f"table {name} has other {what} ({', '.join(map(str, hn))}; expected "
                               f"{', '.join(map(str, wn))})" if hn != wn else f"table {name} has other column types")
                else:
                    out.append(f"{kind} {name} is defined differently")
    return out


def restore_store(source: str | Path, path: str | Path) -> tuple[dict[str, int], Path | None]:
    """Replace the store's contents with an export, keeping a copy of what was there.

    The file is checked first (``check_export``); the current store is saved beside itself as
    ``<name>.before-restore-<time>.db``; then the export is copied in with the online backup API,
    inside the store's own locking, so readers see either the old or the new contents; then
    migrations bring an older export up to date. Returns the restored counts and the safety copy."""
    counts = check_export(source)
    path = Path(path)
    safety = None
    if path.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safety = path.with_name(f"{path.stem}.before-restore-{stamp}.db")
        export_store(path, safety)
    src = sqlite3.connect(f"file:{Path(source)}?mode=ro", uri=True)
    try:
        with Store(path) as store:
            src.backup(store.conn)
    finally:
        src.close()
    with Store(path):  # applies migrations an older export lacks
        pass
    return counts, safety


BULK_CACHE_KIB = 64 * 1024  # page cache of a bulk write's transaction (Store.writing(bulk=True)), at most


def _json_memo():
    """``json.dumps(value, sort_keys=True)``, remembered for flat dicts: a batch's features share a few
    provenance dicts (the demo's 38,280 features one), so each is encoded once."""
    seen: dict = {}

    def as_json(value: dict[str, Any]) -> str:
        try:  # the value's type is in the key: True, 1 and 1.0 are equal and hash alike, but encode apart
            key = tuple((k, type(v), v) for k, v in sorted(value.items()))
            hash(key)
        except TypeError:  # a nested value: encoded each time
            return json.dumps(value, sort_keys=True)
        if key not in seen:
            seen[key] = json.dumps(value, sort_keys=True)
        return seen[key]

    return as_json


def _chunked_in(conn: sqlite3.Connection, sql: str, values: list[Any], size: int = 900, prefix: list[Any] = ()):
    for i in range(0, len(values), size):
        chunk = values[i : i + size]
        yield from conn.execute(sql.format(", ".join("?" * len(chunk))), [*prefix, *chunk])


_migration_lock = threading.Lock()
_local = threading.local()


def open_store(path: str | Path | None = None) -> Store:
    """The calling thread's store for ``path`` (default: the configured store), opened once per thread."""
    key = str(Path(path) if path is not None else config.settings().store)
    cache = getattr(_local, "stores", None)
    if cache is None:
        cache = _local.stores = {}
    store = cache.get(key)
    if store is None:
        store = cache[key] = Store(key)
    return store
