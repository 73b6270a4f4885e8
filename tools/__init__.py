"""edgeops delivery side, in sub-packages by who runs the code.

- ``tools.core``: errors, logging, progress, typed YAML, ``edgeops.yaml``, the project context, PostgreSQL,
  S3, stores and signing. Everyone imports it.
- ``tools.artifacts``: the model bundle and the release file, the contract the training side writes and the
  edge and GitOps sides read.
- ``tools.edge``: what runs on every node (the model-updater). It imports only ``core`` and ``artifacts``
  and runs on the base dependencies alone (no PyGithub, psycopg2, jinja2, pydantic, torch, onnx).
- ``tools.gitops``: what CI runners run: release pull requests, the PR policy, forges, telemetry gates,
  manifests.
- ``tools.kits``: development, tests and the demo: throwaway services, the fleet simulator, actionlint.
- ``tools.cli``: the ``edgeops`` command, one module per command group.

The layers are contracts in ``.importlinter`` (checked by ``make test``). Nothing here imports torch: the
training side (``training/``) may import ``core`` and ``artifacts``; the reverse happens only inside CLI
handlers, which import ``training``/``pipelines`` when they run.
"""
