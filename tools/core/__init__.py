"""What everyone runs: errors, logging, progress, durable file writes (``fsutil``), the shared name
patterns (``names``), the git runner (``git``), ``edgeops.yaml`` and the project context, PostgreSQL, S3,
stores and signing, YAML from untrusted text (``safeyaml``) and the redaction of secrets (``redact``).

The edge imports only the modules of this package that need the base dependencies (``errors``, ``log``,
``fsutil``, ``names``, ``git``, ``signing``, ``s3``, ``store``, ``safeyaml``, ``redact``); ``config``,
``typedyaml``, ``project`` and ``configref`` need pydantic and ``pg`` needs psycopg2, which only the
``delivery`` extra installs. ``.importlinter`` checks it.
"""
