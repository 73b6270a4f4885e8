"""What runs on every edge node: the model-updater (``updater``; its image is ``Dockerfile`` here) and the
reference inference service (``inference``), which follows the contract in docs/inference-contract.md.

The edge closure: imports only ``tools.core`` and ``tools.artifacts`` and runs on the project's base
dependencies alone (``.importlinter`` and tests/test_edge_closure.py check both).
"""
