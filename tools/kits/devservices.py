"""Throwaway real services for the tests and the embedded demo: a PostgreSQL server and an S3 API server.

    python -m tools.kits.devservices        # start both, print the environment to reach them, stop on Ctrl-C
    python -m tools.kits.devservices --up .edgeops/services.env    # start both in the background, write FILE
    . .edgeops/services.env                                   # EDGEOPS_PG_DSN and AWS_* for this shell
    python -m tools.kits.devservices --down .edgeops/services.env  # stop and remove both, delete FILE

PostgreSQL is the real server (Debian's binaries, initdb + pg_ctl) in a temp directory on a free port,
run as the ``postgres`` user when we are root (the server refuses to run as root). S3 is moto's server on
127.0.0.1 reached over real HTTP by boto3 (moto is a dev dependency). Neither is for production data:
PostgreSQL runs with fsync off and trust authentication on loopback only.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tools.core.errors import ServiceError
from tools.core.fsutil import write_atomic

__all__ = ["S3Endpoint", "ThrowawayPostgres", "ThrowawayS3", "find_pg_bindir", "patched_environ"]

_PG_USER = "postgres"


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str], *, remove: Iterable[str] = ()) -> Iterator[None]:
    """``os.environ`` with ``values`` set (and ``remove`` unset) inside the block, as it was after it."""
    names = [*values, *remove]
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(values)
    for key in remove:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def find_pg_bindir() -> Path | None:
    """Where initdb and pg_ctl live: PATH first, then Debian's versioned folders (newest first)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """A real PostgreSQL server for one test session or demo run; removed on :meth:`stop`."""

    def __init__(self, *, user: str = "edgeops") -> None:
        self.user = user
        self.port = 0
        self.dsn = ""
        self.version = ""
        self._dir: Path | None = None
        self._bindir: Path | None = None
        self._run_as: str | None = _PG_USER if os.geteuid() == 0 else None

    def _run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, user=self._run_as, capture_output=True, text=True, check=False, **kw)

    def start(self) -> str:
        bindir = find_pg_bindir()
        if bindir is None:
            raise ServiceError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package "
                "(make test does this when run as root) or point EDGEOPS_TEST_PG_DSN at a server you own"
            )
        if self._run_as is not None:
            try:
                pw = pwd.getpwnam(self._run_as)
            except KeyError:
                raise ServiceError(
                    "running as root but there is no 'postgres' user to run the server as "
                    "(the postgresql package creates it)"
                ) from None
        self._bindir = bindir
        self._dir = Path(tempfile.mkdtemp(prefix="edgeops-pg-"))
        if self._run_as is not None:
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
        data = self._dir / "data"
        init = self._run(
            [str(bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8",
             "--no-locale", "--no-sync"]
        )  # fmt: skip
        if init.returncode != 0:
            self._cleanup()
            raise ServiceError(f"initdb failed (exit {init.returncode}): {init.stderr.strip()[-600:]}")
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding: retry
            self.port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            started = self._run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self._dir / "server.log"), "-o", opts,
                 "-w", "-t", "60", "start"]
            )  # fmt: skip
            if started.returncode == 0:
                break
            last_error = self._log_tail()
        else:
            self._cleanup()
            raise ServiceError(f"PostgreSQL did not start: {last_error}")
        self.dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        version = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        found = re.search(r"\d+(\.\d+)+", version.stdout)
        self.version = found.group(0) if found else "?"
        return self.dsn

    def _log_tail(self) -> str:
        assert self._dir is not None
        try:
            return (self._dir / "server.log").read_text(errors="replace").strip()[-600:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self._dir is None or self._bindir is None:
            return
        self._run(
            [str(self._bindir / "pg_ctl"), "-D", str(self._dir / "data"), "-m", "immediate", "-w", "stop"]
        )
        self._cleanup()

    def _cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    region: str = "us-east-1"
    # moto accepts any credentials; these are placeholders, not secrets.
    access_key: str = "edgeops-test"
    secret_key: str = "edgeops-test"  # noqa: S105

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and edgeops) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }


class _Latency:
    """WSGI middleware: sleep before each response, as a store far away would. The server is threaded, so
    a sleeping request does not hold up the others (this kernel has no netem to delay packets instead)."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: Any, start_response: Any) -> Any:
        time.sleep(self.seconds)
        return self.app(environ, start_response)


def _moto_app(latency_ms: float) -> Any:
    """moto's S3 service as a WSGI app.

    Only S3, without moto's multi-service ``DomainDispatcherApplication``: that dispatcher infers the service
    of every request under one global lock and spent 63% of the server's time there (py-spy, 2,000 PUTs of
    5 KB from 16 threads on a 2-core machine: PUT 102 -> 154/s, GET 153 -> 220/s without it). The S3 app
    itself, its routes and its semantics are moto's, unchanged.
    """
    try:
        from moto.moto_server.werkzeug_app import create_backend_app
    except ImportError as exc:
        raise ServiceError(
            f"the S3 API test server needs moto[server] ({exc}); run `make test` once to install "
            "the dev dependencies"
        ) from None
    app = create_backend_app("s3")
    return _Latency(app, latency_ms / 1000.0) if latency_ms > 0 else app


class ThrowawayS3:
    """moto's S3 API server on 127.0.0.1 and a free port.

    In a thread of this process by default; ``separate_process=True`` runs it in its own interpreter (for
    benchmarks, so that the server's work does not share the client's GIL). ``latency_ms`` delays every
    response by that much.
    """

    def __init__(self, *, latency_ms: float = 0.0, separate_process: bool = False) -> None:
        self.latency_ms = latency_ms
        self.separate_process = separate_process
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self.endpoint: S3Endpoint | None = None

    def start(self) -> S3Endpoint:
        if self.separate_process:
            import sys

            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.kits.devservices",
                    "--s3-only",
                    "--latency-ms",
                    str(self.latency_ms),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line.startswith("http://"):
                self._proc.kill()
                raise ServiceError(f"the S3 API server process did not start (said {line.strip()!r})")
            self.endpoint = S3Endpoint(url=line.strip())
            return self.endpoint
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server("127.0.0.1", 0, _moto_app(self.latency_ms), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.endpoint = S3Endpoint(url=f"http://127.0.0.1:{self._server.server_address[1]}")
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> ThrowawayS3:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _serve_s3_only(latency_ms: float) -> int:
    """``--s3-only``: print the endpoint URL on the first line, serve until terminated."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, _moto_app(latency_ms), threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


_PID_VAR = "EDGEOPS_DEVSERVICES_PID"
UP_TIMEOUT_S = 120.0


def _exports(pg: ThrowawayPostgres, s3: ThrowawayS3) -> list[str]:
    assert s3.endpoint is not None
    return [f"export EDGEOPS_PG_DSN={pg.dsn}", *(f"export {k}={v}" for k, v in s3.endpoint.env().items())]


def _serve(latency_ms: float, env_file: Path | None) -> int:
    """Run both servers until SIGTERM or Ctrl-C; print the exports, or write them to ``env_file``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ThrowawayPostgres() as pg, ThrowawayS3(latency_ms=latency_ms) as s3:
        assert s3.endpoint is not None
        where = f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port}; S3 API (moto) at {s3.endpoint.url}"
        if env_file is None:
            print(
                "# Throwaway services are up; paste these into another shell. Ctrl-C stops and removes them."
            )
            print("\n".join(_exports(pg, s3)))
            print(f"# {where}", flush=True)
        else:  # --up's background process: the file appears, whole, once both servers answer
            text = "\n".join(
                [f"# {where}; stop with: python -m tools.kits.devservices --down {env_file}",
                 *_exports(pg, s3), f"export {_PID_VAR}={os.getpid()}", ""]
            )  # fmt: skip
            write_atomic(env_file, text)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(0.5):
                    time.sleep(0)
        finally:
            if env_file is not None and _pid_in(env_file) == os.getpid():
                env_file.unlink(missing_ok=True)
    return 0


def _pid_in(env_file: Path) -> int | None:
    try:
        found = re.search(rf"^export {_PID_VAR}=(\d+)$", env_file.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(env_file: Path, latency_ms: float = 0.0) -> int:
    """Start both servers in a background process; return once ``env_file`` holds their exports."""
    import sys

    pid = _pid_in(env_file)
    if pid is not None and _alive(pid):
        raise ServiceError(
            f"{env_file}: services from an earlier --up are still running (pid {pid}); "
            f"stop them first with: python -m tools.kits.devservices --down {env_file}"
        )
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.unlink(missing_ok=True)
    log_path = env_file.with_name(env_file.name + ".log")
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.kits.devservices", "--serve-into", str(env_file),
             "--latency-ms", str(latency_ms)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not env_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServiceError(f"the throwaway services did not start (log {log_path}):\n{tail}")
        time.sleep(0.2)
    print(f"# up: {env_file.read_text().splitlines()[0][2:]}")
    print(f"# load them into this shell with: . {env_file}")
    return 0


def down(env_file: Path) -> int:
    """Stop what ``up`` started (SIGTERM; the servers remove their data) and delete ``env_file``."""
    pid = _pid_in(env_file)
    if pid is None:
        raise ServiceError(f"{env_file}: no services to stop (no file written by --up there)")
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            raise ServiceError(f"the services (pid {pid}) did not stop within 60 s; kill {pid} by hand")
    env_file.unlink(missing_ok=True)
    print(f"# down: stopped pid {pid}, removed {env_file}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m tools.kits.devservices",
        description=__doc__.split("\n\n")[0],
        epilog="Without --up/--down: run in the foreground, print the exports, stop on Ctrl-C.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--up", metavar="FILE", help="start both in the background; write their exports to FILE"
    )
    mode.add_argument("--down", metavar="FILE", help="stop the services --up FILE started; delete FILE")
    mode.add_argument("--s3-only", action="store_true", help="serve only the S3 API; print its URL first")
    mode.add_argument("--serve-into", metavar="FILE", help=argparse.SUPPRESS)  # --up's background process
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every S3 response (default 0)")
    args = parser.parse_args(argv)
    try:
        if args.up:
            return up(Path(args.up), args.latency_ms)
        if args.down:
            return down(Path(args.down))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.s3_only:
        return _serve_s3_only(args.latency_ms)
    return _serve(args.latency_ms, Path(args.serve_into) if args.serve_into else None)


if __name__ == "__main__":
    raise SystemExit(main())
