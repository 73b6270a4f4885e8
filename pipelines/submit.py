"""Send the training pipeline to an Argo Server with hera's client.

    ARGO_TOKEN="Bearer $(kubectl create token edgeops-submitter -n argo)" \\
      edgeops pipeline submit --server https://argo.example.com --namespace argo --cron

- the WorkflowTemplate is always sent: created, or, when Argo Server answers 409 AlreadyExists, updated
  in place (GET for the current ``resourceVersion``, then PUT, as Argo Server requires for an update);
- ``--cron`` sends the CronWorkflow the same way;
- ``--run`` then submits a Workflow from the template now (``POST /api/v1/workflows/{ns}/submit``).

The token comes from ``ARGO_TOKEN`` (with or without the ``Bearer`` prefix, as the argo CLI takes it) and
is never logged or printed. The server from ``--server`` or ``ARGO_SERVER`` (``host:port`` is taken as
https unless ``ARGO_SECURE=false``, like the argo CLI); the namespace from ``--namespace`` or
``ARGO_NAMESPACE``, default ``argo``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from tools.core.errors import EdgeopsError, ServiceError

__all__ = ["SubmitResult", "resolve_server", "submit"]

log = logging.getLogger("edgeops.pipeline")

T = TypeVar("T")


@dataclass
class SubmitResult:
    lines: list[str]  # one per object: what happened to it
    workflow: str | None = None  # the submitted Workflow's name (--run)


def resolve_server(server: str | None) -> str:
    value = (server or os.environ.get("ARGO_SERVER", "")).strip()
    if not value:
        raise EdgeopsError("no Argo Server: pass --server URL or set ARGO_SERVER (host:port or a URL)")
    if "://" not in value:
        secure = os.environ.get("ARGO_SECURE", "true").strip().lower() not in ("false", "0", "no")
        value = f"{'https' if secure else 'http'}://{value}"
    # hera joins API paths onto the host with urljoin: a base path survives only with a trailing slash.
    return value.rstrip("/") + "/"


@contextmanager
def _server_errors(server: str, what: str) -> Iterator[None]:
    """hera's and requests' errors as messages a person can act on; the token never appears in them."""
    import requests
    from hera.exceptions import Forbidden, HeraException, Unauthorized

    try:
        yield
    except Unauthorized:
        raise ServiceError(
            f"Argo Server {server} refused the token (401) while {what}: set ARGO_TOKEN to a valid "
            "ServiceAccount token (`kubectl create token ...`)"
        ) from None
    except Forbidden as exc:
        raise ServiceError(
            f"Argo Server {server} denied {what} (403): the token's ServiceAccount needs RBAC for it ({exc})"
        ) from None
    except HeraException as exc:
        raise ServiceError(f"Argo Server {server}: {what} failed: {exc}") from None
    except requests.RequestException as exc:
        raise ServiceError(
            f"cannot reach Argo Server at {server} while {what}: {type(exc).__name__}"
        ) from None


def _quietly(call: Callable[[], T]) -> T:
    # hera 7.1's generated client serialises requests with pydantic's deprecated `.json()`; the warning is
    # hera's to fix, not a user's to see (and the test suite turns warnings into errors).
    from pydantic.warnings import PydanticDeprecatedSince20

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticDeprecatedSince20)
        return call()


def _upsert(kind: str, obj: Any, *, create: Callable[[], Any], get: Callable[[], Any],
            update: Callable[[Any], Any]) -> str:  # fmt: skip
    """Create ``obj``; on 409 AlreadyExists update it at the server's current resourceVersion."""
    from hera.exceptions import AlreadyExists

    name = obj.metadata.name
    try:
        created = _quietly(create)
    except AlreadyExists:
        current = _quietly(get)
        obj.metadata.resource_version = current.metadata.resource_version
        updated = _quietly(lambda: update(obj))
        return f"{kind} {name} updated (resourceVersion {updated.metadata.resource_version})"
    return f"{kind} {name} created (resourceVersion {created.metadata.resource_version})"


def submit(
    *,
    server: str | None,
    namespace: str | None,
    cron: bool = False,
    run: bool = False,
    parameters: Sequence[str] = (),
    verify_tls: bool = True,
) -> SubmitResult:
    from hera.workflows import WorkflowsService
    from hera.workflows.models import (
        CreateCronWorkflowRequest,
        SubmitOpts,
        UpdateCronWorkflowRequest,
        WorkflowSubmitRequest,
        WorkflowTemplateCreateRequest,
        WorkflowTemplateUpdateRequest,
    )

    from pipelines.argo import PARAMETERS, TEMPLATE_NAME, build_cron, build_template

    for p in parameters:
        key = p.split("=", 1)[0]
        if "=" not in p or key not in PARAMETERS:
            raise EdgeopsError(f"--param {p}: expected NAME=VALUE with NAME one of {', '.join(PARAMETERS)}")
    host = resolve_server(server)
    ns = (namespace or os.environ.get("ARGO_NAMESPACE", "") or "argo").strip()
    token = os.environ.get("ARGO_TOKEN", "").strip() or None
    if token is None:
        log.warning("ARGO_TOKEN is not set: sending no Authorization header (fine only for auth-mode=server)")
    service = WorkflowsService(host=host, token=token, namespace=ns, verify_ssl=verify_tls)
    result = SubmitResult(lines=[])
    try:
        template = build_template().build()
        template.metadata.namespace = ns
        with _server_errors(host, f"sending WorkflowTemplate {TEMPLATE_NAME}"):
            result.lines.append(
                _upsert(
                    "WorkflowTemplate", template,
                    create=lambda: service.create_workflow_template(
                        WorkflowTemplateCreateRequest(template=template), namespace=ns),
                    get=lambda: service.get_workflow_template(TEMPLATE_NAME, namespace=ns),
                    update=lambda t: service.update_workflow_template(
                        TEMPLATE_NAME, WorkflowTemplateUpdateRequest(template=t), namespace=ns),
                )
            )  # fmt: skip
        if cron:
            cron_obj = build_cron().build()
            cron_obj.metadata.namespace = ns
            name = str(cron_obj.metadata.name)
            with _server_errors(host, f"sending CronWorkflow {name}"):
                result.lines.append(
                    _upsert(
                        "CronWorkflow", cron_obj,
                        create=lambda: service.create_cron_workflow(
                            CreateCronWorkflowRequest(cron_workflow=cron_obj), namespace=ns),
                        get=lambda: service.get_cron_workflow(name, namespace=ns),
                        update=lambda c: service.update_cron_workflow(
                            name, UpdateCronWorkflowRequest(cron_workflow=c), namespace=ns),
                    )
                )  # fmt: skip
        if run:
            request = WorkflowSubmitRequest(
                namespace=ns,
                resource_kind="WorkflowTemplate",
                resource_name=TEMPLATE_NAME,
                submit_options=SubmitOpts(parameters=list(parameters) or None),
            )
            with _server_errors(host, f"submitting a Workflow from {TEMPLATE_NAME}"):
                wf = _quietly(lambda: service.submit_workflow(request, namespace=ns))
            result.workflow = wf.metadata.name
            link = f"{host}workflows/{ns}/{wf.metadata.name}"
            result.lines.append(f"Workflow {wf.metadata.name} submitted from {TEMPLATE_NAME}: {link}")
    finally:
        service.session.close()
    return result
