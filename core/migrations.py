"""The store's schema, as sqlite-utils migrations: m001..m009, applied in order by ``Store``.

A migration's name and effect never change once released (a store written by any earlier
version opens by applying the ones it lacks). There is no m006: the numbering skips it.
``REVISED_TABLES``: the tables whose updates and deletes move the store's revision counter.
"""

from __future__ import annotations

import sys
import threading


def _import_sqlite_utils():
    """sqlite-utils, imported without pandas and numpy when they are not loaded yet and no other thread
    runs. It imports them whenever they are installed (about 0.8 CPU-s, most of a job worker's or a
    command's start) only to add their scalar types to ``COLUMN_TYPE_MAPPING``, which it reads when it
    infers a table's columns from Python values; the store never has it infer one (these migrations
    create every table in SQL, rows are written by the store's own SQL: ``tests/test_cli.py`` pins
    this). Whatever uses pandas or numpy still imports them where it uses them. Only with one thread:
    a module hidden for a moment could fail another thread's import (the dashboard, whose threads
    have loaded pandas long before, imports sqlite-utils as it is)."""
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules] if threading.active_count() == 1 else []
    sys.modules.update(dict.fromkeys(hidden))  # None in sys.modules: ``import`` raises ImportError
    try:
        import sqlite_utils
        import sqlite_utils.migrations
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()
Migrations = sqlite_utils.migrations.Migrations

MIGRATIONS = Migrations("prefdissect")


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE datasets (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL DEFAULT '',
            licence TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            synthetic INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE samples (
            id TEXT PRIMARY KEY,
            dataset TEXT NOT NULL REFERENCES datasets(name),
            position INTEGER NOT NULL,
            source_id TEXT,
            query TEXT NOT NULL,
            response_a TEXT NOT NULL,
            response_b TEXT NOT NULL,
            model_a TEXT,
            model_b TEXT,
            reference TEXT,
            scenario_group TEXT,
            scenario TEXT,
            cases TEXT,
            turns INTEGER NOT NULL DEFAULT 1,
            words_a INTEGER,
            words_b INTEGER,
            metadata TEXT
        );
        CREATE UNIQUE INDEX samples_dataset_position ON samples(dataset, position);
        CREATE INDEX samples_group ON samples(dataset, scenario_group);
        CREATE TABLE judges (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('human', 'llm', 'gold', 'synthetic')),
            notes TEXT NOT NULL DEFAULT '',
            size_b REAL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE labels (
            sample_id TEXT NOT NULL REFERENCES samples(id),
            judge TEXT NOT NULL REFERENCES judges(name),
            choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
            prob_a REAL CHECK (prob_a IS NULL OR (prob_a >= 0 AND prob_a <= 1)),
            verdict_ab TEXT CHECK (verdict_ab IS NULL OR verdict_ab IN ('A', 'B', 'tie')),
            verdict_ba TEXT CHECK (verdict_ba IS NULL OR verdict_ba IN ('A', 'B', 'tie')),
            source TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            PRIMARY KEY (sample_id, judge)
        );
        CREATE INDEX labels_judge ON labels(judge);
        CREATE TABLE annotations (
            id TEXT PRIMARY KEY,
            request_key TEXT NOT NULL,
            sample_id TEXT NOT NULL REFERENCES samples(id),
            annotator TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            step TEXT NOT NULL,
            orientation TEXT NOT NULL DEFAULT 'AB',
            params TEXT,
            raw TEXT,
            parsed TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost REAL,
            latency_s REAL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            reused INTEGER NOT NULL DEFAULT 0,
            job_id INTEGER,
            created_at TEXT NOT NULL
        );
        CREATE INDEX annotations_sample ON annotations(sample_id, annotator, step);
        CREATE INDEX annotations_request ON annotations(request_key, status);
        CREATE TABLE features (
            sample_id TEXT NOT NULL REFERENCES samples(id),
            source TEXT NOT NULL,
            attribute TEXT NOT NULL,
            value INTEGER NOT NULL CHECK (value IN (-1, 0, 1)),
            score_a REAL,
            score_b REAL,
            excluded INTEGER NOT NULL DEFAULT 0,
            provenance TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (sample_id, source, attribute)
        );
        CREATE INDEX features_source ON features(source, attribute);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'paused')),
            params TEXT NOT NULL DEFAULT '{}',
            total INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            budget REAL,
            message TEXT,
            error TEXT,
            worker_pid INTEGER,
            heartbeat_at TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE TABLE profiles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dataset TEXT NOT NULL,
            scope TEXT NOT NULL,
            judge TEXT NOT NULL,
            feature_source TEXT NOT NULL,
            method TEXT NOT NULL,
            attributes TEXT NOT NULL,
            mean TEXT NOT NULL,
            sd TEXT,
            lo TEXT,
            hi TEXT,
            interval TEXT,
            p_pos TEXT,
            n INTEGER,
            accuracy REAL,
            log_loss REAL,
            rhat TEXT,
            ess TEXT,
            fingerprint TEXT,
            provenance TEXT,
            imported INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (dataset, scope, judge, feature_source, method)
        );
        """
    )
    db["samples"].enable_fts(["query", "response_a", "response_b"], create_triggers=True, tokenize="porter")


@MIGRATIONS()
def m002_profile_draws(db: sqlite_utils.Database) -> None:
    # thinned posterior draws (float32, row-major, draws x attributes) for differences and simulation
    db.execute("ALTER TABLE profiles ADD COLUMN draws BLOB")


@MIGRATIONS()
def m003_job_runs(db: sqlite_utils.Database) -> None:
    # a job's earlier runs, archived when it is queued again (core/jobs.py): its history is kept
    db.executescript(
        """
        CREATE TABLE job_runs (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            run INTEGER NOT NULL,
            status TEXT NOT NULL,
            total INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0,
            budget REAL,
            message TEXT,
            error TEXT,
            worker_pid INTEGER,
            started_at TEXT,
            finished_at TEXT,
            archived_at TEXT NOT NULL,
            PRIMARY KEY (job_id, run)
        );
        """
    )


REVISED_TABLES = ("datasets", "samples", "judges", "labels", "features", "profiles")


@MIGRATIONS()
def m004_revision(db: sqlite_utils.Database) -> None:
    # A counter that every update or delete of stored content moves. An insert already moves the
    # table's largest rowid, but a relabelled sample (an upsert) does not, and caches keyed on the
    # store's version (the dashboard's) would keep showing the old label.
    db.executescript(
        "CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);"
        " INSERT INTO revision VALUES (1, 0);"
        + "".join(f" CREATE TRIGGER {t}_{op.lower()}_revision AFTER {op} ON {t}"
                  " BEGIN UPDATE revision SET n = n + 1; END;"
                  for t in REVISED_TABLES for op in ("UPDATE", "DELETE")))


@MIGRATIONS()
def m005_own_data(db: sqlite_utils.Database) -> None:
    # Bring your own data: the user's own category of a sample (any taxonomy: task families, bias
    # types, benchmark subsets), beside the paper's scenario group; a verdict's strength in each
    # presentation order (1 slightly, 2 clearly: "A>B" / "A>>B"); what else the judge said (raw
    # scores behind prob_a, mapped back to A/B), as JSON.
    db.executescript(
        """
        ALTER TABLE samples ADD COLUMN category TEXT;
        CREATE INDEX samples_category ON samples(dataset, category);
        ALTER TABLE labels ADD COLUMN strength_ab INTEGER CHECK (strength_ab IS NULL OR strength_ab IN (1, 2));
        ALTER TABLE labels ADD COLUMN strength_ba INTEGER CHECK (strength_ba IS NULL OR strength_ba IN (1, 2));
        ALTER TABLE labels ADD COLUMN detail TEXT;
        """
    )


@MIGRATIONS()
def m007_llm_dialects(db: sqlite_utils.Database) -> None:
    # what a probe learnt about an LLM endpoint (core/llm.py Dialect), once per (base URL, model);
    # and which requests' usage is an estimate (they timed out: the server never said)
    db.executescript(
        """
        CREATE TABLE llm_dialects (
            base_url TEXT NOT NULL,
            model TEXT NOT NULL,
            dialect TEXT NOT NULL,
            probed_at TEXT NOT NULL,
            PRIMARY KEY (base_url, model)
        );
        ALTER TABLE annotations ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
        """
    )


@MIGRATIONS()
def m008_llm_batches(db: sqlite_utils.Database) -> None:
    # Batch mode (core/batch.py): each JSONL file of requests sent to a batch runner (the Batch API
    # or a runner outside the tool), and which request went in which file with its result line, so
    # a request is never submitted twice and any worker can poll, ingest and resume.
    db.executescript(
        """
        CREATE TABLE llm_batches (
            id TEXT PRIMARY KEY,
            job_id INTEGER,
            base_url TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL,
            round INTEGER NOT NULL DEFAULT 1,
            mode TEXT NOT NULL CHECK (mode IN ('api', 'file')),
            path TEXT,
            requests INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            input_file_id TEXT,
            remote_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('planned', 'submitted', 'file', 'ingested', 'superseded')),
            remote_status TEXT,
            answered INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            malformed INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX llm_batches_status ON llm_batches(status, base_url, model);
        CREATE TABLE llm_batch_requests (
            batch_id TEXT NOT NULL,
            request_key TEXT NOT NULL,
            sample_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sent', 'answered', 'errored', 'recorded', 'dropped')),
            result TEXT,
            error TEXT,
            PRIMARY KEY (batch_id, request_key)
        );
        CREATE INDEX llm_batch_requests_key ON llm_batch_requests(request_key, state);
        """
    )


@MIGRATIONS()
def m009_experiments(db: sqlite_utils.Database) -> None:
    # The manipulation experiment (core/experiment.py): its settings and provenance, the job that
    # runs it, the datasets its queries and generated pairs are stored as, and its result once
    # finished (per arm: measured and predicted win rates, shifts, success rates), as JSON.
    db.executescript(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'created',
            spec TEXT NOT NULL,
            job_id INTEGER,
            dataset TEXT,
            queries_dataset TEXT,
            result TEXT,
            provenance TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        );
        """
    )


def names() -> list[str]:
    """The migrations' names, in order: the schema's version (a store with all of them applied has this
    schema; the prebuilt demo records them, so a copy never meets another schema)."""
    return [m.name for m in MIGRATIONS._migrations]
