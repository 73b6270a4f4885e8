"""Run the training pipeline on this machine, and resume it where it stopped.

    edgeops pipeline run --run-dir .edgeops/pipeline/2026-11 --config training/configs/demo.yaml
    edgeops pipeline run --run-dir .edgeops/pipeline/2026-11 ...     # the same command again: resumes
    edgeops pipeline run --run-dir ... --set epochs=5 --set lr=0.001   # training-config overrides

Every step is an ``edgeops`` subcommand run as a child process (``python -m tools.cli``, the interpreter
running this), reading and writing the run directory:

    <run-dir>/snapshot/                 snapshot
    <run-dir>/run/                      train (weights.safetensors, run.json, metrics.jsonl, checkpoint/)
    <run-dir>/run/evaluation.json       evaluate
    <run-dir>/run/export/               export
    <run-dir>/run/published.json        publish (the bundle's version and URI; the bundle is in the store)
    <run-dir>/proposal.json             propose (the PR)
    <run-dir>/logs/<step>.log           each step's output, stdout and stderr as they came
    <run-dir>/pipeline-state.json       per step: the hash of its inputs and of its outputs

How a re-run decides: a step's *inputs* are the files and folders it reads (hashed by content), its
argv (run-dir paths made relative) and the parts of edgeops.yaml and the training config it uses (the
config's values, its ``base:`` chain resolved: not the file's bytes); its *outputs* are the files it writes.
``--set KEY=VALUE`` overrides (``RunOptions.overrides``) reach the train step only, as ``edgeops train
--set``, and are part of its inputs: changing them re-runs train and what follows. They are validated
before any step runs; keys the snapshot step reads too (the data interface, the vocabularies) cannot be
overridden (put them in a config file with ``base:``).

A step is skipped ("skipped: unchanged") when its last attempt succeeded, its inputs hash is the recorded
one and its outputs still hash to what it left; otherwise it runs. A step whose upstream re-ran but
produced the same bytes is therefore skipped too. A failed (or interrupted) ``train`` with the same inputs
continues from its checkpoint (``--resume``) instead of starting over. With ``--source pg+s3`` the
database is not an input: a run directory takes its snapshot once; start a new run directory (or pass
``--force snapshot``) for this month's data.

The state file is replaced atomically (temporary file, fsync, rename, fsync of the folder) before and
after every step, so a runner killed at any instant leaves a state that the next run reads correctly. A
lock file keeps two runners out of one run directory.

Tests make step ``<name>`` fail with ``EDGEOPS_PIPELINE_FAULT_AT=<name>``: the runner then starts a child
that prints a message to stderr and exits 1 in place of the step's command. Never set it outside tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pipelines.dag import STEP_NAMES
from tools.core.errors import EdgeopsError
from tools.core.fsutil import sha256_file, write_atomic
from tools.core.log import fields

if TYPE_CHECKING:
    from tools.core.config import EdgeopsConfig
    from tools.core.project import Project

__all__ = ["FAULT_ENV", "STATE_FILE", "RunOptions", "digest_path", "load_state", "run_pipeline"]

log = logging.getLogger("edgeops.pipeline")

STATE_FILE = "pipeline-state.json"
STATE_FORMAT = "edgeops-pipeline-state/v1"
LOCK_FILE = ".pipeline.lock"
FAULT_ENV = "EDGEOPS_PIPELINE_FAULT_AT"
TAIL_LINES = 15
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what `edgeops train` exits with when preempted


@dataclass(frozen=True)
class RunOptions:
    run_dir: Path
    config: str | None = None  # edgeops.yaml (the global --config); found upwards from . when None
    training_config: str | None = None  # default: edgeops.yaml's training_config
    source: str = "dir"  # dir | pg+s3
    data_path: str | None = None  # dir: folder of LDO files (default: data.local_path)
    cache: str | None = None  # pg+s3: the LDO object cache (default: data.cache_path)
    limit: int | None = None
    store: str | None = None  # publish: default store.bundles
    ring: str | None = None  # propose: default the first ring
    nproc: int = 1
    until: str | None = None
    only: str | None = None
    force: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # "KEY=VALUE" training-config overrides, passed to train as --set
    skip_propose: bool = False
    echo: bool = False  # copy each step's output to stderr as it comes
    log_json: bool = False


# --- hashing -----------------------------------------------------------------------------------------------


def digest_path(path: Path) -> str | None:
    """Content hash of a file or a folder tree (names, bytes, symlink targets); None when it is missing."""
    if path.is_symlink():
        return "sha256:" + hashlib.sha256(b"link:" + os.readlink(path).encode()).hexdigest()
    if path.is_file():
        return "sha256:" + sha256_file(path)
    if not path.is_dir():
        return None
    h = hashlib.sha256(b"tree\n")
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        base = Path(folder)
        for name in sorted(files + [d for d in dirs if (base / d).is_symlink()]):
            p = base / name
            rel = p.relative_to(path).as_posix()
            entry = "L " + os.readlink(p) if p.is_symlink() else "F " + sha256_file(p)
            h.update(f"{rel}\0{entry}\n".encode())
    return "sha256:" + h.hexdigest()


def _canonical_hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --- state -------------------------------------------------------------------------------------------------


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.exists():
        return {"format": STATE_FORMAT, "steps": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeopsError(
            f"{path}: not a readable pipeline state file ({exc}); move it away to start the run over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise EdgeopsError(
            f"{path}: not a {STATE_FORMAT} file; move it away (or use a new --run-dir) to start over"
        )
    return state


def _save_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_atomic(run_dir / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgeopsError(
                f"{run_dir}: another `edgeops pipeline run` is working in this run directory; wait for it"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --- the steps ---------------------------------------------------------------------------------------------


@dataclass
class _Context:
    opts: RunOptions
    run_dir: Path
    project: Project
    training_config: Path
    effective: dict[str, Any]  # the training config's values: the file over its base: chain, then --set
    file_values: dict[str, Any]  # the same without --set: what the snapshot step reads

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def config_path(self) -> Path:
        return self.project.config_path

    @property
    def cfg(self) -> EdgeopsConfig:
        return self.project.cfg

    @property
    def snapshot(self) -> Path:
        return self.run_dir / "snapshot"

    @property
    def run(self) -> Path:
        return self.run_dir / "run"

    def rel(self, arg: str) -> str:
        """argv as hashed: run-dir and checkout paths made relative, so a moved checkout hashes the same."""
        for base, token in ((self.run_dir, "<run-dir>"), (self.root, "<root>")):
            prefix = str(base)
            if arg == prefix or arg.startswith(prefix + os.sep):
                return token + arg[len(prefix) :]
        return arg


@dataclass
class _Plan:
    argv: list[str]  # the subcommand and its arguments (after `edgeops --config ...`)
    inputs: dict[str, Any]
    outputs: list[Path]
    needs: list[tuple[Path, str]] = field(default_factory=list)  # (path, the step that makes it)
    clear: list[Path] = field(default_factory=list)  # removed before the step runs afresh
    after: Callable[[list[str]], None] | None = None  # called with the step's stdout lines on success
    skip: tuple[str, str] | None = None  # (short reason, what to do): the step is skipped
    blocked: tuple[str, str] | None = None  # the same, but only when the step would run (not unchanged)


def _section(model: Any) -> Any:
    return model.model_dump(mode="json")


def _plan_snapshot(ctx: _Context) -> _Plan:
    from training.config import SNAPSHOT_KEYS

    argv = ["snapshot", "--source", ctx.opts.source, "--out", str(ctx.snapshot),
            "--training-config", str(ctx.training_config)]  # fmt: skip
    # the values snapshot reads, not the file's bytes: a config's base: file counts, its comments do not
    inputs: dict[str, Any] = {
        "training_config": {key: ctx.file_values[key] for key in SNAPSHOT_KEYS},
        "config.data": _section(ctx.cfg.data),
    }
    needs: list[tuple[Path, str]] = []
    if ctx.opts.source == "dir":
        data = Path(ctx.opts.data_path) if ctx.opts.data_path else ctx.root / ctx.cfg.data.local_path
        data = data.resolve()
        argv += ["--data-path", str(data)]
        inputs["ldos"] = digest_path(data)
        needs.append((data, "`edgeops data synth` or a copy of the LDO files"))
    # pg+s3: the database is not hashed; a run directory takes its snapshot once (module docstring). The
    # cache folder is in the argv (so in the inputs): give a run the same --cache in every phase.
    if ctx.opts.source == "pg+s3" and ctx.opts.cache:
        argv += ["--cache", str(Path(ctx.opts.cache).resolve())]
    if ctx.opts.limit is not None:
        argv += ["--limit", str(ctx.opts.limit)]
    return _Plan(argv, inputs, outputs=[ctx.snapshot], needs=needs)


def _plan_train(ctx: _Context) -> _Plan:
    argv = [
        "train",
        "--snapshot",
        str(ctx.snapshot),
        "--out",
        str(ctx.run),
        "--config",
        str(ctx.training_config),
    ]
    for override in ctx.opts.overrides:
        argv += ["--set", override]
    if ctx.opts.nproc != 1:
        argv += ["--nproc", str(ctx.opts.nproc)]
    # The effective config (its base: chain and the --set overrides applied), as the run will record it;
    # the overrides are in the argv too, which is part of the inputs.
    inputs = {
        "snapshot": digest_path(ctx.snapshot),
        "training_config": ctx.effective,
        "overrides": list(ctx.opts.overrides),
    }
    outputs = [ctx.run / "weights.safetensors", ctx.run / "run.json", ctx.run / "metrics.jsonl"]
    return _Plan(argv, inputs, outputs, needs=[(ctx.snapshot, "snapshot")], clear=[ctx.run])


def _model_inputs(ctx: _Context) -> dict[str, Any]:
    return {
        "weights": digest_path(ctx.run / "weights.safetensors"),
        "run.json": digest_path(ctx.run / "run.json"),
    }


def _plan_evaluate(ctx: _Context) -> _Plan:
    inputs = {
        "snapshot": digest_path(ctx.snapshot),
        **_model_inputs(ctx),
        "config.gates.evaluation": _section(ctx.cfg.gates.evaluation),
        # the model the candidate is compared with: the fleet's release file names it (bundles are immutable)
        "fleet_release": digest_path(ctx.project.release_file(ctx.project.last_ring)),
        "public_key": digest_path(ctx.project.public_key_path),
    }
    return _Plan(
        ["evaluate", "--snapshot", str(ctx.snapshot), "--run", str(ctx.run)],
        inputs,
        outputs=[ctx.run / "evaluation.json"],
        needs=[(ctx.snapshot, "snapshot"), (ctx.run / "weights.safetensors", "train")],
    )


def _plan_export(ctx: _Context) -> _Plan:
    return _Plan(
        ["export", "--run", str(ctx.run), "--snapshot", str(ctx.snapshot)],
        {"snapshot": digest_path(ctx.snapshot), **_model_inputs(ctx)},
        outputs=[ctx.run / "export"],
        needs=[(ctx.snapshot, "snapshot"), (ctx.run / "weights.safetensors", "train")],
        clear=[ctx.run / "export"],
    )


def _plan_publish(ctx: _Context) -> _Plan:
    argv = ["publish", "--run", str(ctx.run)]
    if ctx.opts.store:
        argv += ["--store", ctx.opts.store]
    inputs = {
        **_model_inputs(ctx),
        "evaluation": digest_path(ctx.run / "evaluation.json"),
        "export": digest_path(ctx.run / "export"),
        "config.store": _section(ctx.cfg.store),
        "config.cost": _section(ctx.cfg.cost),
    }
    outputs = [ctx.run / "published.json", ctx.run / "model.json", ctx.run / "MODEL_CARD.md"]
    needs = [(ctx.run / "evaluation.json", "evaluate"), (ctx.run / "export", "export")]
    return _Plan(argv, inputs, outputs, needs=needs)


def _plan_propose(ctx: _Context) -> _Plan:
    published = ctx.run / "published.json"
    ring = ctx.opts.ring or ctx.cfg.ring_order()[0]
    proposal = ctx.run_dir / "proposal.json"
    plan = _Plan([], {}, outputs=[proposal], needs=[(published, "publish")])
    if ctx.opts.skip_propose:
        plan.skip = ("--skip-propose", "open the release PR later with `edgeops propose`")
        return plan
    if not _has_signing_key():
        plan.blocked = (
            "no signing key",
            "propose signs the release block: set EDGEOPS_SIGNING_KEY (or EDGEOPS_SIGNING_KEY_FILE) "
            "and run again to open the release PR",
        )
        return plan
    bundle = json.loads(published.read_text())["bundle"] if published.is_file() else "<not published>"
    plan.argv = ["propose", "--ring", ring, "--bundle", bundle]
    plan.inputs = {"published": digest_path(published), "config.forge": _section(ctx.cfg.forge)}

    def record(stdout: list[str]) -> None:
        doc = {"ring": ring, "bundle": bundle, "output": [line.rstrip("\n") for line in stdout]}
        write_atomic(proposal, json.dumps(doc, indent=2) + "\n")

    plan.after = record
    return plan


_PLANNERS: dict[str, Callable[[_Context], _Plan]] = {
    "snapshot": _plan_snapshot,
    "train": _plan_train,
    "evaluate": _plan_evaluate,
    "export": _plan_export,
    "publish": _plan_publish,
    "propose": _plan_propose,
}


def _has_signing_key() -> bool:
    from tools.core.signing import KEY_ENV, KEY_FILE_ENV

    return bool(os.environ.get(KEY_ENV, "").strip() or os.environ.get(KEY_FILE_ENV, "").strip())


# --- running one step --------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    code: int
    seconds: float
    stdout: list[str]
    tail: list[str]
    interrupted: bool


class _Child:
    """The running step, so that SIGTERM to the runner reaches it (train then saves a checkpoint)."""

    proc: subprocess.Popen[str] | None = None
    interrupted = False


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    _Child.interrupted = True
    if _Child.proc is not None and _Child.proc.poll() is None:
        _Child.proc.send_signal(signal.SIGTERM)


def _display(argv: list[str]) -> str:
    return "edgeops " + shlex.join(argv)


def _execute(name: str, command: list[str], log_path: Path, *, echo: bool) -> _Outcome:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stdout: list[str] = []
    lock = threading.Lock()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as logf:

        def pump(stream: IO[str], is_stdout: bool) -> None:
            for line in stream:
                with lock:
                    logf.write(line)
                    logf.flush()
                    tail.append(line.rstrip("\n"))
                    if is_stdout:
                        stdout.append(line)
                    if echo:
                        sys.stderr.write(f"  {name} | {line}")

        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace", env=env,
        )  # fmt: skip
        _Child.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, False), daemon=True),
        ]
        for t in pumps:
            t.start()
        interrupted = False
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; let it finish stopping
            interrupted = True
            proc.terminate()
            code = proc.wait()
        finally:
            _Child.proc = None
        for t in pumps:
            t.join()
    # 143: the step stopped on SIGTERM (`edgeops train` saves a checkpoint first), ours or its own.
    stopped = interrupted or _Child.interrupted or code == EXIT_INTERRUPTED
    return _Outcome(code, time.monotonic() - start, stdout, list(tail), stopped)


def _gates_failed(evaluation: Path) -> bool:
    try:
        return json.loads(evaluation.read_text()).get("passed") is False
    except (OSError, ValueError, AttributeError):
        return False


def _why_run(prev: dict[str, Any] | None, inputs: str, outputs: str, forced: bool) -> str | None:
    if forced:
        return "--force"
    if prev is None:
        return "not run yet"
    if prev.get("status") != "ok":
        return f"its last attempt {'was interrupted' if prev.get('status') == 'running' else 'failed'}"
    if prev.get("inputs") != inputs:
        return "inputs changed"
    if prev.get("outputs") != outputs:
        return "its outputs changed since it ran"
    return None


# --- the pipeline ------------------------------------------------------------------------------------------


def _check_step(name: str | None, flag: str) -> None:
    if name is not None and name not in STEP_NAMES:
        raise EdgeopsError(f"{flag} {name}: no such step; steps: {', '.join(STEP_NAMES)}")


def _selected(opts: RunOptions) -> list[str]:
    _check_step(opts.until, "--until")
    _check_step(opts.only, "--only")
    for name in opts.force:
        _check_step(name, "--force")
    if opts.only and opts.until:
        raise EdgeopsError("--only and --until do not combine: --only runs one step, --until a prefix")
    if opts.only:
        return [opts.only]
    if opts.until:
        return list(STEP_NAMES[: STEP_NAMES.index(opts.until) + 1])
    return list(STEP_NAMES)


def _context(opts: RunOptions) -> _Context:
    from tools.core.project import Project
    from training.config import SNAPSHOT_KEYS, load_training_config

    if opts.source not in ("dir", "pg+s3"):
        raise EdgeopsError(f"--source {opts.source}: use dir or pg+s3")
    if opts.nproc < 1:
        raise EdgeopsError(f"--nproc must be at least 1, got {opts.nproc}")
    project = Project.load(opts.config)
    tc = Path(opts.training_config) if opts.training_config else project.training_config_path
    if not tc.is_file():
        raise EdgeopsError(f"training config {tc}: no such file; pass --config PATH")
    # Checked before any step runs: a typo in the file or in a --set fails here, naming the key.
    file_values = load_training_config(tc).model_dump(mode="json")
    effective = load_training_config(tc, overrides=opts.overrides).model_dump(mode="json")
    snapshot_keys = [o for o in opts.overrides if o.partition("=")[0].strip() in SNAPSHOT_KEYS]
    if snapshot_keys:
        raise EdgeopsError(
            f"--set {snapshot_keys[0]}: the snapshot step reads this key too ({', '.join(SNAPSHOT_KEYS)}), "
            "and --set reaches only train: write a config with `base:` and the new value instead"
        )
    run_dir = opts.run_dir.resolve()
    return _Context(opts, run_dir, project, tc.resolve(), effective, file_values)


def run_pipeline(opts: RunOptions) -> int:
    """Run (or resume) the pipeline; 0 when every selected step succeeded or was skipped."""
    ctx = _context(opts)
    steps = _selected(opts)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _on_sigterm)
    _Child.interrupted = False
    try:
        with _locked(ctx.run_dir):
            return _run(ctx, steps)
    finally:
        if in_main and previous is not None:  # None: a handler not installed from Python; leave it
            signal.signal(signal.SIGTERM, previous)


def _run(ctx: _Context, steps: list[str]) -> int:
    state = load_state(ctx.run_dir)
    publish_done = state["steps"].get("publish", {}).get("status") == "ok"
    if "publish" in steps and not _has_signing_key() and not publish_done:
        raise EdgeopsError(
            "publish signs the bundle and needs the release-signing key: set EDGEOPS_SIGNING_KEY (PEM "
            "text) or EDGEOPS_SIGNING_KEY_FILE, or stop before publishing with --until export. "
            "Nothing was run."
        )
    start = time.monotonic()
    log.info(
        f"pipeline: {' -> '.join(steps)} in {ctx.run_dir}",
        extra=fields(config=str(ctx.config_path), training_config=str(ctx.training_config)),
    )
    prefix = [sys.executable, "-m", "tools.cli", "--config", str(ctx.config_path)]
    if ctx.opts.log_json:
        prefix.append("--log-json")
    ran: list[str] = []
    skipped: list[str] = []
    width = max(len(s) for s in steps)
    for i, name in enumerate(steps, 1):
        label = f"[{i}/{len(steps)}] {name:<{width}}"
        plan = _PLANNERS[name](ctx)
        if _Child.interrupted:
            log.error(f"pipeline: stopped before {name} (SIGTERM); run the same command again to resume")
            return EXIT_INTERRUPTED
        if plan.skip:
            short, advice = plan.skip
            log.info(f"{label}  skipped: {short} ({advice})", extra=fields(step=name, status="skipped"))
            skipped.append(f"{name} ({short})")
            continue
        missing = [(p, maker) for p, maker in plan.needs if not p.exists()]
        if missing:
            what = "; ".join(f"{p} (made by {maker})" for p, maker in missing)
            raise EdgeopsError(f"{name} needs {what}: run the steps before it (drop --only)")
        inputs = _canonical_hash({"argv": [ctx.rel(a) for a in plan.argv], **plan.inputs})
        prev = state["steps"].get(name)
        reason = _why_run(prev, inputs, _canonical_hash([digest_path(p) for p in plan.outputs]),
                          name in ctx.opts.force)  # fmt: skip
        if reason is None:
            log.info(f"{label}  skipped: unchanged", extra=fields(step=name, status="unchanged"))
            skipped.append(f"{name} (unchanged)")
            continue
        if plan.blocked:
            short, advice = plan.blocked
            log.info(f"{label}  skipped: {short} ({advice})", extra=fields(step=name, status="skipped"))
            skipped.append(f"{name} ({short})")
            continue
        argv, clear = list(plan.argv), list(plan.clear)
        if (
            name == "train"
            and prev is not None
            and prev.get("status") in ("failed", "running")
            and prev.get("inputs") == inputs
            and (ctx.run / "checkpoint").is_dir()
            and name not in ctx.opts.force
        ):
            argv.append("--resume")
            clear = []
            reason += "; continuing from its checkpoint"
        log_path = ctx.run_dir / "logs" / f"{name}.log"
        log.info(f"{label}  running ({reason}): {_display(argv)}", extra=fields(step=name, status="running"))
        for path in clear:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        started = _now()
        state["steps"][name] = {"status": "running", "inputs": inputs, "started_at": started, "argv": argv}
        _save_state(ctx.run_dir, state)
        command = prefix + argv
        if os.environ.get(FAULT_ENV) == name:
            message = f"injected failure: {FAULT_ENV}={name}"
            command = [
                sys.executable,
                "-c",
                f"import sys; sys.stderr.write({message!r} + '\\n'); sys.exit(1)",
            ]
        outcome = _execute(name, command, log_path, echo=ctx.opts.echo)
        record: dict[str, Any] = {
            "inputs": inputs,
            "started_at": started,
            "finished_at": _now(),
            "seconds": round(outcome.seconds, 3),
            "argv": argv,
            "log": str(log_path),
        }
        if outcome.code != 0 or outcome.interrupted:
            state["steps"][name] = {"status": "failed", "exit_code": outcome.code, **record}
            _save_state(ctx.run_dir, state)
            how = (
                f"was interrupted (exit {outcome.code})"
                if outcome.interrupted
                else f"FAILED (exit {outcome.code})"
            )
            log.error(
                f"{label}  {how} after {outcome.seconds:.1f}s; last lines of {log_path}:",
                extra=fields(step=name, status="failed", exit_code=outcome.code),
            )
            for line in outcome.tail or ["(no output)"]:
                log.error(f"    {name} | {line}")
            if name == "evaluate" and _gates_failed(ctx.run / "evaluation.json"):
                log.error(
                    "pipeline: the candidate failed its evaluation gates (above), so it is not a release "
                    "candidate: nothing was exported or published. More data or a better training config, "
                    "then run again."
                )
                return 1
            log.error(
                f"pipeline: stopped at {name}. Fix the cause and run the same command again: the steps "
                f"before {name} are skipped when unchanged ({ctx.run_dir / STATE_FILE})."
            )
            return EXIT_INTERRUPTED if outcome.interrupted else 1
        if plan.after is not None:
            plan.after(outcome.stdout)
        outputs = _canonical_hash([digest_path(p) for p in plan.outputs])
        state["steps"][name] = {"status": "ok", "outputs": outputs, **record}
        _save_state(ctx.run_dir, state)
        log.info(f"{label}  done in {outcome.seconds:.1f}s", extra=fields(step=name, status="ok"))
        ran.append(name)
    log.info(
        f"pipeline: finished in {time.monotonic() - start:.1f}s; ran: {', '.join(ran) or 'nothing'}; "
        f"skipped: {', '.join(skipped) or 'nothing'}"
    )
    return 0
