"""edgeops delivery side: GitOps tooling, the edge model-updater and the CLI.

Nothing in this package imports torch (tests/test_layering.py enforces it): it runs on CPU runners and on
edge nodes. The training side (``training/``) may import the small core modules here (errors, logging,
typed YAML, stores); the reverse never happens except through the CLI's lazy dispatch by module name.
"""
