"""edgeops pipelines: the training pipeline as a DAG of steps, its local runner, and the Argo Workflows
rendering. Imports ``training`` and ``tools``. Today it holds the embedded demo; the DAG lands with issue #8.
"""
