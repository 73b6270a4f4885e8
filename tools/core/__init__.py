"""What everyone runs: errors, logging, progress, typed YAML, ``edgeops.yaml`` and the project context,
PostgreSQL, S3, stores and signing, the shared name patterns and the one git runner.

The edge imports only the modules of this package that need the base dependencies (``errors``, ``log``,
``fsutil``, ``names``, ``git``, ``signing``, ``s3``, ``store``); ``config``, ``typedyaml``, ``project`` and
``configref`` need pydantic and ``pg`` needs psycopg2, which only the ``delivery`` extra installs.
``.importlinter`` checks it.
"""
