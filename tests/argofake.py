"""A fake of Argo Server's HTTP API, in-process, for the ``edgeops pipeline submit`` tests.

It is a fake: an ``http.server`` on 127.0.0.1 (port 0) in a thread, holding objects in a dict. It serves
the endpoints hera's ``WorkflowsService`` calls for what the CLI does, with Argo Server's documented
semantics (argo-workflows ``server/workflowtemplate/workflow_template_server.go``, ``server/workflow/``,
and ``util/grpc/interceptor.go``, which turns Kubernetes errors into gRPC codes that grpc-gateway sends
as HTTP statuses with a ``{"code", "message"}`` body):

- ``POST /api/v1/workflow-templates/{ns}`` ``{"template": ...}`` creates; a name that exists answers
  409 with code 6 (AlreadyExists, ``workflowtemplates.argoproj.io "x" already exists``);
- ``GET``/``PUT /api/v1/workflow-templates/{ns}/{name}``: 404 code 5 when missing; an update without
  ``metadata.resourceVersion`` is 400 code 3 (Kubernetes: "must be specified for an update"), with a
  stale one 409 code 10 (Aborted: "the object has been modified");
- the same for ``/api/v1/cron-workflows/{ns}[/{name}]`` with ``{"cronWorkflow": ...}``;
- ``POST /api/v1/workflows/{ns}/submit`` ``{"resourceKind", "resourceName", "submitOptions"}`` creates a
  Workflow named ``<template>-<5 chars>`` that references the template (404 when it does not exist);
- every request needs ``Authorization: Bearer <token>``; otherwise 401 code 16.

Validation of the objects themselves is not faked: the tests check them against the upstream CRDs.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeArgoServer", "Request"]

_KINDS = {  # URL segment -> (body key, Kubernetes resource name, kind)
    "workflow-templates": ("template", "workflowtemplates.argoproj.io", "WorkflowTemplate"),
    "cron-workflows": ("cronWorkflow", "cronworkflows.argoproj.io", "CronWorkflow"),
}


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeArgoServer:
    token: str
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, ns, name)
    requests: list[Request] = field(default_factory=list)
    _version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeArgoServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer = fake.handle(self.command, self.path, self.headers.get("Authorization"), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the API -------------------------------------------------------------------------------------------

    def _stamp(self, obj: dict[str, Any], ns: str) -> dict[str, Any]:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = ns
        meta["resourceVersion"] = str(self._version)
        meta.setdefault("uid", secrets.token_hex(8))
        meta.setdefault("creationTimestamp", "2026-11-01T03:00:00Z")
        return obj

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(Request(method, path, auth, copy.deepcopy(body)))  # as sent, before edits
            if auth != f"Bearer {self.token}":
                return 401, {
                    "code": 16,
                    "message": "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/",
                }
            path = path.split("?", 1)[0]
            if match := re.fullmatch(
                r"/api/v1/(workflow-templates|cron-workflows)/([^/]+)(?:/([^/]+))?", path
            ):
                return self._objects(method, match.group(1), match.group(2), match.group(3), body or {})
            if method == "POST" and (match := re.fullmatch(r"/api/v1/workflows/([^/]+)/submit", path)):
                return self._submit(match.group(1), body or {})
            return 404, {"code": 5, "message": f"Not Found: {method} {path}"}

    def _objects(
        self, method: str, segment: str, ns: str, name: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        key, resource, kind = _KINDS[segment]
        if name is None and method == "POST":
            obj = body.get(key)
            if not obj:
                return 400, {"code": 3, "message": f"{kind} was not found in the request body"}
            new_name = obj.get("metadata", {}).get("name")
            if not new_name:
                return 400, {
                    "code": 3,
                    "message": f"{kind}.argoproj.io is invalid: metadata.name: Required value",
                }
            if (kind, ns, new_name) in self.objects:
                return 409, {"code": 6, "message": f'{resource} "{new_name}" already exists'}
            obj.get("metadata", {}).pop("resourceVersion", None)
            self.objects[(kind, ns, new_name)] = self._stamp(obj, ns)
            return 200, obj
        if name is None:
            return 405, {"code": 12, "message": "Method Not Allowed"}
        current = self.objects.get((kind, ns, name))
        if current is None:
            return 404, {"code": 5, "message": f'{resource} "{name}" not found'}
        if method == "GET":
            return 200, current
        if method == "PUT":
            obj = body.get(key)
            if not obj:
                return 400, {"code": 3, "message": f"{kind} is not found in Request body"}
            version = obj.get("metadata", {}).get("resourceVersion")
            if not version:
                invalid = "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                return 400, {"code": 3, "message": f'{kind}.argoproj.io "{name}" is invalid: {invalid}'}
            if version != current["metadata"]["resourceVersion"]:
                stale = "the object has been modified; please apply your changes to the latest version"
                stale += " and try again"
                return 409, {
                    "code": 10,
                    "message": f'Operation cannot be fulfilled on {resource} "{name}": {stale}',
                }
            obj["metadata"]["uid"] = current["metadata"]["uid"]
            self.objects[(kind, ns, name)] = self._stamp(obj, ns)
            return 200, obj
        return 405, {"code": 12, "message": "Method Not Allowed"}

    def _submit(self, ns: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("resourceKind") != "WorkflowTemplate":
            return 400, {"code": 3, "message": f"unsupported resourceKind {body.get('resourceKind')!r}"}
        template = body.get("resourceName", "")
        if ("WorkflowTemplate", ns, template) not in self.objects:
            return 404, {"code": 5, "message": f'workflowtemplates.argoproj.io "{template}" not found'}
        options = body.get("submitOptions") or {}
        params = [
            {"name": p.split("=", 1)[0], "value": p.split("=", 1)[1]} for p in options.get("parameters", [])
        ]
        name = f"{template}-{secrets.token_hex(3)[:5]}"
        workflow: dict[str, Any] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "labels": {"workflows.argoproj.io/workflow-template": template}},
            "spec": {
                "workflowTemplateRef": {"name": template},
                **({"arguments": {"parameters": params}} if params else {}),
            },
        }
        self.objects[("Workflow", ns, name)] = self._stamp(workflow, ns)
        return 200, workflow
