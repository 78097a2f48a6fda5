"""Browserless Streamlit for the tests: the page-test helpers every ``tests/test_app_*.py`` shares
(``open_page`` and friends, over ``streamlit.testing.v1.AppTest``), and a ``Session`` that speaks the
browser's websocket protocol from Python.

A browserless Streamlit session: the browser's websocket protocol, spoken from Python.

One ``Session`` is one browser tab as the server sees it: it opens ``/_stcore/stream``, asks for
a page run with a ``rerun_script`` BackMsg (the same protobuf the frontend sends) and reads
ForwardMsgs until the run's ``script_finished``. The load benchmark runs twenty of these at once and
the concurrency test runs two beside a worker; it is far lighter than twenty Chromiums on two cores.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

from dashboard.stpatch import replace_once

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")


# ---------------------------------------------------------------- page tests (AppTest)


def scan_components_once() -> bool:
    """Make Streamlit's scan of the installed packages for custom components run once per process.

    Every new ``AppTest`` (each ``open_page``) builds its own component registry on its first run, and
    filling it reads the metadata of every installed distribution (~420 here): 0.26 CPU s, where a warm
    page run of the app takes 0.05-0.1 s, so most of a page test's own time went to it. The installed
    packages do not change during a test run, so the scan's result is kept (each registry is still its own,
    filled from it). False where Streamlit moved the scan (then every AppTest scans, as before)."""
    import functools

    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # pragma: no cover - a Streamlit without v2 components scans nothing
        return False

    def make(scan):
        once = functools.lru_cache(maxsize=None)(scan)

        @functools.wraps(scan)
        def scan_once(*args, **kwargs):
            return list(once(*args, **kwargs))  # a list of its own for each registry, as the scan returned
        return scan_once

    return replace_once(manifest_scanner, "scan_component_manifests", "scans_once", make)


def compile_scripts_once() -> bool:
    """Make Streamlit compile each script once per process, not once per ``AppTest`` run.

    Every ``AppTest.run()`` (a first run, and each rerun after a click) makes new ``ScriptCache``s, so it
    parsed ``dashboard/app.py`` and the page again and rewrote their syntax trees for Streamlit's "magic"
    (its ``ast.fix_missing_locations`` walks the whole tree once per rewritten statement): about a third of
    a page run's CPU in a profile, where ``streamlit run`` compiles each script once per server. The
    compiled code of a file is kept by (path, modification time, size, magic on or off), so an edited file
    is compiled again; a code object is immutable and safe to share. False where Streamlit moved it."""
    import os

    try:
        from streamlit import config
        from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    except ImportError:  # pragma: no cover
        return False

    def make(get):
        kept: dict[tuple, object] = {}

        def get_bytecode(self, script_path: str):
            path = os.path.abspath(script_path)
            st = os.stat(path)
            key = (path, st.st_mtime_ns, st.st_size, bool(config.get_option("runner.magicEnabled")))
            code = kept.get(key)
            if code is None:
                code = kept[key] = get(self, script_path)
            return code
        return get_bytecode

    return replace_once(ScriptCache, "get_bytecode", "compiles_once", make)


def wait_for_runs_without_polling() -> bool:
    """Make ``AppTest.run()`` wait for its script thread by joining it, not by polling every millisecond.

    Streamlit's ``require_widgets_deltas`` sleeps 1 ms and scans every event the run has recorded, until
    the script thread reports its shutdown: a thousand wake-ups a second of a page run, each taking the
    GIL from the script it waits for (on a busy machine a page test's main thread spent some 10-20% of
    the run's CPU on it). The script thread ends right after it sends that shutdown, so joining the thread
    (with the same timeout, and the same error and stop on a timeout) waits for the same moment. False
    where Streamlit moved it (then every run polls, as before)."""
    try:
        from streamlit.testing.v1 import local_script_runner as lsr
    except ImportError:  # pragma: no cover
        return False

    def make(poll):
        def require_widgets_deltas(runner, timeout: float = 3) -> None:
            thread = getattr(runner, "_script_thread", None)
            if not isinstance(thread, threading.Thread):  # pragma: no cover - a Streamlit that runs it elsewhere
                return poll(runner, timeout)
            thread.join(timeout)
            if runner.script_stopped():
                return
            runner.request_stop()  # as Streamlit does on a timeout: stop the script, then say so
            runner.join()
            raise RuntimeError(f"AppTest script run timed out after {timeout}(s)")
        return require_widgets_deltas

    return replace_once(lsr, "require_widgets_deltas", "joins", make)


def ok(at):
    """``at`` after asserting that its last run raised nothing."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str | None = None, query: dict | None = None, timeout: float = 120):
    """An ``AppTest`` of the whole app (dashboard/app.py: sign-in, first-run seeding, navigation) run on one
    page of ``pages/`` (``"samples"`` for pages/samples.py; None for the default page) with ``query`` as
    the URL's query parameters, asserted to have raised nothing. The store is ``PREFDISSECT_STORE`` (point
    it at a copy of the session's demo: ``store_path`` / ``unfitted_store_path``)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    if page:
        at.switch_page(f"../pages/{page}.py")  # relative to dashboard/, where app.py lives
    return ok(at.run())


def rerun(at):
    """Run ``at`` again (after widget changes) and assert nothing was raised."""
    return ok(at.run())


def frames_with(at, *columns: str) -> list:
    """The page's dataframes that have all of ``columns``."""
    return [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]


def frame_with(at, *columns: str):
    """The page's first dataframe that has all of ``columns``."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def sent(at) -> str:
    """Everything the page sent to the browser: every element's protobuf, tabs and fragments included."""
    return "\n".join(str(el.proto) for el in at._tree if getattr(el, "proto", None) is not None)


def _missing(v) -> bool:
    import pandas as pd

    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # a list or an array in a cell
        return False


def shown_tables(at) -> list:
    """Every table of the page as a reader sees it: a DataFrame of cell texts (a ``pandas.Styler``'s display
    text where the page formatted the cells, the table's placeholder where a cell is empty, the value as
    text otherwise) whose columns are the shown labels (``column_config`` labels; hidden columns left out,
    ``column_order`` kept). Cells with a printf ``format`` in ``column_config`` keep their value's text."""
    import json

    import pandas as pd
    import pyarrow as pa

    out = []
    for d in at.dataframe:
        raw = d.value.reset_index(drop=True)
        cfg = json.loads(d.proto.columns or "{}")
        text = pd.DataFrame({c: [None if _missing(v) else str(v) for v in raw[c]] for c in raw.columns}, dtype=object)
        if d.proto.arrow_data.HasField("styler"):
            display = pa.ipc.open_stream(d.proto.arrow_data.styler.display_values).read_all().to_pandas()
            display = display.reset_index(drop=True)
            for c in raw.columns:
                if c in display.columns:
                    text[c] = [None if t is None else str(v) for t, v in zip(text[c], display[c])]
        placeholder = d.proto.placeholder if d.proto.HasField("placeholder") else "None"
        text = text.map(lambda v: placeholder if v is None else v)
        order = list(d.proto.column_order) or list(raw.columns)
        columns = {}
        for c in order:
            c_cfg = cfg.get(str(c), {}) or {}
            if c not in raw.columns or c_cfg.get("hidden"):
                continue
            columns[c_cfg.get("label") or str(c)] = text[c]
        out.append(pd.DataFrame(columns))
    return out


# ---------------------------------------------------------------- a session over the websocket


FINISHED = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "ok",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error",
    ForwardMsg.FINISHED_EARLY_FOR_RERUN: "rerun",
    getattr(ForwardMsg, "FINISHED_FRAGMENT_RUN_SUCCESSFULLY", -1): "ok",
}


WIDGETS = {"selectbox", "radio", "multiselect", "slider", "checkbox", "number_input"}


@dataclass
class Run:
    page: str
    seconds: float
    status: str
    texts: list[str] = field(default_factory=list)  # markdown, text, alert, heading bodies; metrics
    exceptions: list[str] = field(default_factory=list)
    widgets: dict = field(default_factory=dict)  # label -> (kind, element proto), first of a label wins
    downloads: dict = field(default_factory=dict)  # download button label -> its proto (url or deferred_file_id)


class Session:
    def __init__(self, url: str, timeout: float = 60):
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.ws = connect(ws_url, subprotocols=["streamlit"], open_timeout=timeout, max_size=None).__enter__()
        self.timeout = timeout
        self.http_url = url
        self.session_id = ""  # the server's id for this session, from its first new_session message

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clear_cache(self) -> None:
        """Empty the server's st.cache_data / st.cache_resource (the "Clear cache" menu item)."""
        msg = BackMsg()
        msg.clear_cache = True
        self.ws.send(msg.SerializeToString())

    def run(self, page: str = "", query: str = "", change: dict | None = None, widgets: dict | None = None) -> Run:
        """Run a page (its url_path; "" for the default page) and wait for the end of the run.

        ``change``: {widget label: new value} as a user would set them, for widgets seen in
        ``widgets`` (a previous run's ``Run.widgets`` of the page); the other widgets keep their values.
        A value is an option as shown (selectbox, radio, multiselect: a list), a number (slider,
        number_input) or a bool (checkbox)."""
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        for label, value in (change or {}).items():
            kind, el = (widgets or {})[label]
            state = msg.rerun_script.widget_states.widgets.add()
            state.id = el.id
            if kind in ("selectbox", "radio"):
                state.string_value = str(value)
            elif kind == "multiselect":
                state.string_array_value.data.extend(str(v) for v in value)
            elif kind == "slider":
                state.double_array_value.data.extend(value if isinstance(value, (list, tuple)) else [value])
            elif kind == "checkbox":
                state.bool_value = bool(value)
            elif el.data_type == el.INT:  # number_input
                state.int_value = int(value)
            else:
                state.double_value = float(value)
        t = time.perf_counter()
        self.ws.send(msg.SerializeToString())
        run = Run(page, 0.0, "timeout")
        deadline = time.monotonic() + self.timeout
        started = False
        while time.monotonic() < deadline:
            raw = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                started = True
                if fwd.new_session.HasField("initialize"):
                    self.session_id = fwd.new_session.initialize.session_id
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                el = fwd.delta.new_element
                which = el.WhichOneof("type")
                if which == "exception":
                    run.exceptions.append(f"{el.exception.type}: {el.exception.message}")
                elif which in ("markdown", "text", "alert", "heading"):
                    run.texts.append(getattr(el, which).body)
                elif which == "metric":
                    run.texts.append(f"{el.metric.label}: {el.metric.body}")
                elif which == "download_button":
                    run.downloads[el.download_button.label] = el.download_button
                elif which in WIDGETS:
                    run.widgets.setdefault(getattr(el, which).label, (which, getattr(el, which)))
            elif kind == "script_finished" and started:
                status = FINISHED.get(fwd.script_finished, str(fwd.script_finished))
                if status == "rerun":
                    continue
                run.status = status
                break
        run.seconds = time.perf_counter() - t
        return run

    def download(self, button) -> bytes:
        """What a click on a download button (a ``Run.downloads`` proto) delivers: for a deferred
        file, the backend operation the browser sends, then the file at the URL it answers with."""
        import urllib.request

        url = button.url
        if not url:
            msg = BackMsg()
            msg.backend_operation_request.request_id = "download"
            msg.backend_operation_request.session_id = self.session_id
            msg.backend_operation_request.deferred_file.file_id = button.deferred_file_id
            self.ws.send(msg.SerializeToString())
            deadline = time.monotonic() + self.timeout
            while not url:
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer to the deferred download")
                fwd = ForwardMsg()
                fwd.ParseFromString(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if fwd.WhichOneof("type") == "backend_operation_response":
                    resp = fwd.backend_operation_response
                    if resp.error_msg:
                        raise RuntimeError(f"download failed: {resp.error_msg} {resp.error_reason}")
                    url = resp.deferred_file.url
        with urllib.request.urlopen(self.http_url.rstrip("/") + url, timeout=self.timeout) as r:
            return r.read()
