"""A browserless Streamlit session: the browser's websocket protocol, spoken from Python.

One ``Session`` is one browser tab as the server sees it: it opens ``/_stcore/stream``, asks for
a page run with a ``rerun_script`` BackMsg (the same protobuf the frontend sends) and reads
ForwardMsgs until the run's ``script_finished``. The load benchmark runs twenty of these at once and
the concurrency test runs two beside a worker; it is far lighter than twenty Chromiums on two cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

FINISHED = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "ok",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error",
    ForwardMsg.FINISHED_EARLY_FOR_RERUN: "rerun",
    getattr(ForwardMsg, "FINISHED_FRAGMENT_RUN_SUCCESSFULLY", -1): "ok",
}


@dataclass
class Run:
    page: str
    seconds: float
    status: str
    texts: list[str] = field(default_factory=list)  # markdown / text / exception bodies seen
    exceptions: list[str] = field(default_factory=list)


class Session:
    def __init__(self, url: str, timeout: float = 60):
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.ws = connect(ws_url, subprotocols=["streamlit"], open_timeout=timeout, max_size=None).__enter__()
        self.timeout = timeout

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

    def run(self, page: str = "", query: str = "") -> Run:
        """Run a page (its url_path; "" for the default page) and wait for the end of the run."""
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
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
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                el = fwd.delta.new_element
                which = el.WhichOneof("type")
                if which == "exception":
                    run.exceptions.append(f"{el.exception.type}: {el.exception.message}")
                elif which in ("markdown", "text", "alert", "heading"):
                    run.texts.append(getattr(el, which).body)
            elif kind == "script_finished" and started:
                status = FINISHED.get(fwd.script_finished, str(fwd.script_finished))
                if status == "rerun":
                    continue
                run.status = status
                break
        run.seconds = time.perf_counter() - t
        return run
