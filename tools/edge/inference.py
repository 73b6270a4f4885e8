"""The reference inference service: serves ``<root>/current/model.onnx`` and follows the node's model swaps.

    edgeops inference serve --root /var/lib/context-edge/models --listen 0.0.0.0:9190

It follows docs/inference-contract.md, the one contract between the model-updater and whatever serves the
model on a node:

- It reads the model root the updater writes (the hostPath), and nothing else. It learns of a swap by
  polling ``readlink(<root>/current)`` (and the identity of the folder it names) every ``poll_interval``
  seconds (0.2 by default): no inotify, so it works on any file system, and a missed notification cannot
  strand it on an old model. ``POST /reload`` (what the updater's ``--reload-url`` can point at) and
  :meth:`InferenceService.reload` only mean "look now".
- A new version is loaded from ``<root>/<version>/model.onnx`` (the folder the link named, never through
  ``current`` again, so the version label and the bytes cannot disagree), fully: the ONNX Runtime session is
  built and, when the folder has ``golden.json``, run on its inputs and compared with its outputs (which also
  warms the session up), before it is swapped in. Until then the old session serves; a load that fails
  keeps the old model, is logged, counted (``edgeops_inference_load_failures_total``) and shown by
  ``/healthz``, and is not retried until ``current`` changes or a reload is asked for.
- The swap is one reference assignment of an immutable :class:`LoadedModel` (version, session, generation);
  each request reads it once, so a request runs on one (version, session) pair and reports that version,
  and never sees half a swap. A request in flight keeps the old session alive until it returns.
- Every prediction carries the version that produced it: :meth:`InferenceService.predict` returns it, the
  ``on_prediction`` callback receives it, ``/predict`` answers it as ``model_version``, and
  ``edgeops_inference_predictions_total{version}`` counts it.

HTTP (``serve_http``): ``POST /predict`` (``{"inputs": {name: nested lists}}`` →
``{"model_version", "generation", "outputs"}``), ``POST /reload``, ``GET /healthz`` (200 while a model is
served, with its version and the last load failure; 503 before the first one), ``GET /metrics``.

Base dependencies only (the edge closure): ONNX Runtime is imported when the first model loads, so the
``edgeops`` command line does not pay for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Info, generate_latest

from tools.core.errors import ConfigError, EdgeopsError
from tools.core.log import fields, setup_logging
from tools.edge.updater import CURRENT, MARKER, _listen_address, listen_error

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "InferenceInputError",
    "InferenceService",
    "LoadFailure",
    "LoadedModel",
    "ModelLoadError",
    "NoModelError",
    "Prediction",
    "add_serve_arguments",
    "build_parser",
    "load_session",
    "main",
    "serve",
    "serve_from_args",
    "serve_http",
]

log = logging.getLogger("edgeops.inference")

DEFAULT_POLL_INTERVAL = 0.2  # s: a swap is served within this (plus the load); a readlink + stat per poll
MODEL_FILE = "model.onnx"
GOLDEN_FILE = "golden.json"
MAX_BODY = 64 * 1024 * 1024  # bytes: a /predict body larger than this is refused (413), not read
# ONNX tensor element types → numpy, for JSON inputs (nested lists carry no dtype). Others: numpy decides.
_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
}


class ModelLoadError(EdgeopsError):
    """A version could not be loaded (or failed its golden check); the service keeps its old model."""


class NoModelError(EdgeopsError):
    """Nothing to serve yet: ``current`` does not exist, or no version under it ever loaded."""


class InferenceInputError(EdgeopsError):
    """The request's inputs do not fit the model (names, dtypes, shapes); the caller must fix them."""


@dataclass(frozen=True)
class LoadedModel:
    """What serves requests: replaced as a whole on a swap, never changed in place."""

    version: str  # the name of the folder `current` named when it was loaded
    folder: Path
    session: Any  # onnxruntime.InferenceSession (or anything with run/get_inputs/get_outputs)
    generation: int  # 1 for the first model this service loaded, +1 on every swap
    loaded_at: float  # epoch seconds
    load_seconds: float
    interface: str | None  # from the updater's completion marker, when there is one
    identity: tuple[str, int, int]  # (link target, st_dev, st_ino): a repaired folder is a new identity
    inputs: Mapping[str, np.dtype[Any] | None]
    outputs: tuple[str, ...]


class Prediction(NamedTuple):
    """One request's answer and the model that produced it."""

    version: str
    outputs: dict[str, np.ndarray[Any, Any]]
    generation: int


@dataclass(frozen=True)
class LoadFailure:
    version: str  # what `current` named ("" when it named nothing readable)
    message: str
    at: float  # epoch seconds


def load_session(
    path: Path, *, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0
) -> Any:
    """An ONNX Runtime session for ``path`` (the options of the updater's golden check, but ``threads``
    intra-op threads: 0 lets ONNX Runtime choose, which is what a service on its own node wants)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


def _golden_check(session: Any, folder: Path, names: Mapping[str, np.dtype[Any] | None]) -> None:
    """Run ``golden.json``'s inputs through the session that is about to serve and compare its outputs.

    The updater's ``golden_check`` checked the same bytes before the folder was renamed into place, in a
    session of its own; this one checks (and warms up) the session the requests will use.
    """
    try:
        golden = json.loads((folder / GOLDEN_FILE).read_bytes())
        inputs, dtypes, expected, atol = (golden[k] for k in ("inputs", "dtypes", "expected", "atol"))
        feed = {name: np.asarray(inputs[name], dtype=np.dtype(str(dtypes[name]))) for name in names}
        wanted = sorted(expected)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{folder / GOLDEN_FILE} does not fit the model ({exc!r})") from None
    try:
        actual = session.run(wanted, feed)
    except Exception as exc:  # noqa: BLE001 - ORT raises pybind11 types that have no stable Python class
        raise ModelLoadError(f"{folder.name}'s model fails on golden.json's inputs ({exc})") from None
    for name, got in zip(wanted, actual, strict=True):
        want = np.asarray(expected[name], dtype=np.float64)
        got64 = np.asarray(got, dtype=np.float64)
        if got64.shape != want.shape or not np.isfinite(got64).all():
            raise ModelLoadError(
                f"{folder.name}: output {name} has shape {got64.shape} (golden.json {want.shape}) or values "
                "that are not finite"
            )
        diff = float(np.abs(got64 - want).max()) if got64.size else 0.0
        if not diff <= float(atol):
            raise ModelLoadError(f"{folder.name}: output {name} differs from golden.json by {diff:.3g}")


class InferenceService:
    """Serves the model ``<root>/current`` names and follows its swaps (module docstring).

    ``poll_interval`` (s): how often the watcher thread :meth:`start` runs looks at ``current``; ``None``
    runs no watcher, and the model changes only on :meth:`reload` (the fleet simulator calls it at the
    simulated instant of each node's swap). ``loader`` builds a session from a ``model.onnx`` path
    (:func:`load_session` by default; the simulator shares sessions between nodes with identical bytes).
    ``check_golden``: run ``golden.json`` through each new session before it serves. ``on_prediction`` is
    called in the requesting thread with every :class:`Prediction` (it must be thread-safe).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        poll_interval: float | None = DEFAULT_POLL_INTERVAL,
        loader: Callable[[Path], Any] | None = None,
        check_golden: bool = True,
        on_prediction: Callable[[Prediction], None] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if poll_interval is not None and not (math.isfinite(poll_interval) and poll_interval > 0):
            raise ConfigError(f"poll interval {poll_interval!r}: give a positive number of seconds, or None")
        self.root = Path(root)
        self.poll_interval = poll_interval
        self.check_golden = check_golden
        self.on_prediction = on_prediction
        self._loader = loader if loader is not None else load_session
        self._model: LoadedModel | None = None  # the one reference a swap replaces; read once per request
        self._lock = threading.Lock()  # one load at a time (the watcher and /reload)
        self._failure: tuple[tuple[Any, ...], LoadFailure] | None = None
        self.load_failures = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._m_predictions = Counter(
            "edgeops_inference_predictions",
            "Predictions served, by the model version that produced them",
            ["version"],
            registry=self.registry,
        )
        self._m_swaps = Counter(
            "edgeops_inference_swaps", "Models replaced by a newer load of `current`", registry=self.registry
        )
        self._m_failures = Counter(
            "edgeops_inference_load_failures",
            "Versions that did not load (the old model kept serving)",
            registry=self.registry,
        )
        self._m_model = Info("edgeops_inference_model", "The model version served", registry=self.registry)

    # --- lifecycle ---

    def start(self) -> InferenceService:
        """Load what ``current`` names (if anything) and start the watcher (unless ``poll_interval`` is
        None). Returns self; a service with nothing to serve yet starts anyway and answers 503."""
        self.reload()
        if self.poll_interval is not None and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="inference-watch", daemon=True)
            self._watcher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def __enter__(self) -> InferenceService:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _watch(self) -> None:
        assert self.poll_interval is not None
        while not self._stop.wait(self.poll_interval):
            try:
                self._refresh(force=False)
            except Exception:  # the watcher must outlive any surprise; it is logged with its traceback
                log.exception("watching current failed; trying again at the next poll")

    # --- what is served ---

    @property
    def model(self) -> LoadedModel | None:
        """The model serving now (None before the first load)."""
        return self._model

    @property
    def version(self) -> str | None:
        model = self._model
        return model.version if model is not None else None

    @property
    def swaps(self) -> int:
        """How many times a newer load replaced the served model."""
        model = self._model
        return model.generation - 1 if model is not None else 0

    @property
    def last_failure(self) -> LoadFailure | None:
        """The last load that failed, while its version is still what ``current`` names (else None)."""
        failure = self._failure
        return failure[1] if failure is not None else None

    def status(self) -> dict[str, Any]:
        model, failure = self._model, self.last_failure
        return {
            "model_version": model.version if model else None,
            "generation": model.generation if model else 0,
            "interface": model.interface if model else None,
            "loaded_at": model.loaded_at if model else None,
            "swaps": self.swaps,
            "load_failures": self.load_failures,
            "last_failure": {"version": failure.version, "message": failure.message, "at": failure.at}
            if failure
            else None,
        }

    # --- following `current` ---

    def reload(self) -> bool:
        """Look at ``current`` now and load it if it changed (a failed version is tried again).

        True when the service serves what ``current`` names; False when nothing is installed yet or the
        load failed (the old model keeps serving; :attr:`last_failure` says why)."""
        return self._refresh(force=True)

    def _refresh(self, *, force: bool) -> bool:
        with self._lock:
            served = self._model
            link = self.root / CURRENT
            try:
                target = os.readlink(link)
                folder = self.root / target  # a relative target resolves against the root, as the kernel does
                st = os.stat(folder)
            except FileNotFoundError:
                if served is None:
                    return False  # nothing installed yet: not a failure
                return self._failed(
                    ("missing",), "", f"{link} is missing or dangling; keeping {served.version}", force
                )
            except OSError as exc:  # EINVAL: `current` is not a symlink; EACCES: the root is not readable
                return self._failed(("unreadable", str(exc)), "", f"cannot read {link}: {exc}", force)
            identity = (target, st.st_dev, st.st_ino)
            if served is not None and served.identity == identity:
                if self._failure is not None:
                    self._failure = None  # `current` is back on what we serve (a rollback, a repair undone)
                return True
            version = folder.name
            if self._failure is not None and self._failure[0] == identity and not force:
                return False  # this version already failed to load; wait for a change or a reload
            started = time.perf_counter()
            try:
                session, inputs, outputs = self._load(folder)
            except ModelLoadError as exc:
                kept = f"; keeping {served.version}" if served else "; nothing to serve"
                return self._failed(identity, version, f"{exc}{kept}", True)
            model = LoadedModel(
                version=version,
                folder=folder,
                session=session,
                generation=served.generation + 1 if served else 1,
                loaded_at=time.time(),
                load_seconds=time.perf_counter() - started,
                interface=_marker_interface(folder),
                identity=identity,
                inputs=inputs,
                outputs=outputs,
            )
            self._model = model  # the swap: requests that read the old reference finish on the old session
            self._failure = None
            self._m_model.info({"version": version})
            if served is not None:
                self._m_swaps.inc()
            log.info(
                "serving a new model",
                extra=fields(
                    version=version,
                    previous=served.version if served else None,
                    generation=model.generation,
                    load_ms=round(model.load_seconds * 1000, 1),
                ),
            )
            return True

    def _load(self, folder: Path) -> tuple[Any, dict[str, np.dtype[Any] | None], tuple[str, ...]]:
        path = folder / MODEL_FILE
        try:
            session = self._loader(path)
            inputs = {i.name: _DTYPES.get(i.type) for i in session.get_inputs()}
            outputs = tuple(o.name for o in session.get_outputs())
        except Exception as exc:  # noqa: BLE001 - ORT raises pybind11 types for every load failure
            raise ModelLoadError(f"{path} does not load in ONNX Runtime ({exc})") from None
        if self.check_golden and (folder / GOLDEN_FILE).exists():
            _golden_check(session, folder, inputs)
        return session, inputs, outputs

    def _failed(self, key: tuple[Any, ...], version: str, message: str, force: bool) -> bool:
        """Record a failed look or load once per cause (the watcher sees the same one every poll)."""
        if self._failure is not None and self._failure[0] == key and not force:
            return False
        self._failure = (key, LoadFailure(version, message, time.time()))
        self.load_failures += 1
        self._m_failures.inc()
        log.warning("the new model was not loaded; the old one keeps serving", extra=fields(error=message))
        return False

    # --- serving ---

    def predict(self, inputs: Mapping[str, Any]) -> Prediction:
        """Run the served model on ``inputs`` ({input name: array or nested lists}).

        The model is read once: the outputs and the version reported come from the same session, whatever
        swaps meanwhile. Raises :class:`NoModelError` before the first load and
        :class:`InferenceInputError` when the inputs do not fit the model."""
        model = self._model
        if model is None:
            raise NoModelError(f"no model to serve yet: {self.root / CURRENT} names no loadable version")
        names = set(inputs)
        if names != set(model.inputs):
            raise InferenceInputError(
                f"model {model.version} takes inputs {sorted(model.inputs)}; got {sorted(names)}"
            )
        try:
            feed = {name: np.asarray(inputs[name], dtype=dtype) for name, dtype in model.inputs.items()}
        except (TypeError, ValueError) as exc:
            raise InferenceInputError(f"the inputs do not convert to the model's types ({exc})") from None
        try:
            values = model.session.run(list(model.outputs), feed)
        except Exception as exc:  # noqa: BLE001 - ORT's InvalidArgument etc. have no stable Python type
            raise InferenceInputError(
                f"model {model.version} could not run on these inputs ({exc})"
            ) from None
        prediction = Prediction(
            model.version, dict(zip(model.outputs, values, strict=True)), model.generation
        )
        self._m_predictions.labels(version=model.version).inc()
        if self.on_prediction is not None:
            self.on_prediction(prediction)
        return prediction


def _marker_interface(folder: Path) -> str | None:
    try:
        marker = json.loads((folder / MARKER).read_bytes())
    except (OSError, ValueError):
        return None
    interface = marker.get("interface") if isinstance(marker, dict) else None
    return interface if isinstance(interface, str) else None


# --- HTTP: /predict, /reload, /healthz, /metrics ------------------------------------------------------------


def serve_http(service: InferenceService, host: str, port: int) -> ThreadingHTTPServer:
    """Serve the service in a daemon thread; ``server.server_address[1]`` is the port when ``port`` is 0.
    An address that cannot be bound is an :class:`EdgeopsError` saying what to do (``listen_error``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/predict":
                self._predict()
            elif path == "/reload":
                # The body (the updater sends {version, path}) is read and ignored: the service loads what
                # `current` names, so a caller can make it look, never make it load something else.
                self._read_body()
                ok = service.reload()
                self._json(200 if ok else 503, service.status())
            else:
                self._json(404, {"error": "not found: POST /predict or /reload, GET /healthz or /metrics"})

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status = service.status()
                self._json(200 if status["model_version"] else 503, status)
            elif path == "/metrics":
                self._send(200, generate_latest(service.registry), CONTENT_TYPE_LATEST)
            else:
                self._json(404, {"error": "not found: POST /predict or /reload, GET /healthz or /metrics"})

        def _read_body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": f"body over {MAX_BODY} bytes"})
                self.close_connection = True
                return None
            return self.rfile.read(length) if length else b""

        def _predict(self) -> None:
            body = self._read_body()
            if body is None:
                return
            try:
                inputs = json.loads(body).get("inputs")
                if not isinstance(inputs, dict):
                    raise InferenceInputError('the body is not {"inputs": {name: nested lists}}')
                result = service.predict(inputs)
            except (ValueError, AttributeError, InferenceInputError) as exc:
                self._json(400, {"error": str(exc)})
            except NoModelError as exc:
                self._json(503, {"error": str(exc)})
            else:
                outputs = {k: np.asarray(v).tolist() for k, v in result.outputs.items()}
                self._json(
                    200,
                    {"model_version": result.version, "generation": result.generation, "outputs": outputs},
                )

        def _json(self, status: int, doc: Mapping[str, Any]) -> None:
            self._send(status, json.dumps(doc).encode("utf-8") + b"\n", "application/json")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per prediction would drown the service's own log; metrics count them

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, port), Handler)
    except OSError as exc:
        raise listen_error(exc, host, port) from None
    threading.Thread(target=server.serve_forever, name="inference-http", daemon=True).start()
    return server


# --- the command line ---------------------------------------------------------------------------------------


def serve(
    *,
    root: Path,
    listen: tuple[str, int],
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int = 0,
    check_golden: bool = True,
    stop: threading.Event | None = None,
) -> int:
    """Serve until ``stop`` or SIGTERM; 0 on a clean stop."""
    stop = stop or threading.Event()

    def loader(path: Path) -> Any:
        return load_session(path, providers=providers, threads=threads)

    service = InferenceService(root, poll_interval=poll_interval, loader=loader, check_golden=check_golden)
    previous_term: Any = None
    server: ThreadingHTTPServer | None = None
    try:
        service.start()
        server = serve_http(service, listen[0], listen[1])
        if threading.current_thread() is threading.main_thread():
            previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        log.info(
            "inference service started",
            extra=fields(
                root=str(service.root),
                address=f"{listen[0]}:{server.server_address[1]}",
                version=service.version,
                poll_interval=poll_interval,
            ),
        )
        stop.wait()
        log.info("stopping", extra=fields(version=service.version))
        return 0
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if server is not None:
            server.shutdown()
            server.server_close()
        service.close()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``edgeops inference serve`` (for the CLI to mount under its own parser)."""
    parser.add_argument(
        "--root", required=True, type=Path, metavar="DIR",
        help="the model root the updater writes (the hostPath); the service loads what `current` names",
    )  # fmt: skip
    parser.add_argument(
        "--listen", required=True, type=_listen_address, metavar="HOST:PORT",
        help="serve POST /predict, POST /reload, GET /healthz and GET /metrics here (such as 0.0.0.0:9190)",
    )  # fmt: skip
    parser.add_argument(
        "--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL, metavar="SECONDS",
        help=f"how often to look at `current` for a swap (default {DEFAULT_POLL_INTERVAL:g})",
    )  # fmt: skip
    parser.add_argument(
        "--provider", action="append", default=[], metavar="NAME",
        help="ONNX Runtime execution provider, in order of preference; repeat for several "
        "(default CPUExecutionProvider)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=0, metavar="N",
        help="intra-op threads per session (default 0: ONNX Runtime chooses)",
    )  # fmt: skip
    parser.add_argument(
        "--no-golden-check", dest="check_golden", action="store_false",
        help="do not run golden.json through a new session before it serves (the updater checked it)",
    )  # fmt: skip
    # SUPPRESS: under `edgeops`, which has its own --log-json/-v (as for `edgeops updater run`).
    parser.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS, help="log JSON lines")
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


def serve_from_args(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.poll_interval) and args.poll_interval > 0):
        raise ConfigError(f"--poll-interval {args.poll_interval:g}: give a positive number of seconds")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads}: give 0 (ONNX Runtime chooses) or more")
    return serve(
        root=args.root,
        listen=args.listen,
        poll_interval=args.poll_interval,
        providers=tuple(args.provider) or ("CPUExecutionProvider",),
        threads=args.threads,
        check_golden=args.check_golden,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeops inference", description="The reference inference service.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve <root>/current and follow its swaps"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.edge.inference serve …`` (``edgeops inference serve …`` runs the same code)."""
    args = build_parser().parse_args(argv)
    setup_logging(json_lines=getattr(args, "log_json", False), verbose=getattr(args, "verbose", False))
    try:
        return serve_from_args(args)
    except EdgeopsError as exc:
        log.error(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
