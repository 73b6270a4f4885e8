"""What CI runners run: release pull requests (``promotion``), the required PR check (``policy``), forges
(``forge``, ``github``), the git history of rings (``gitrepo``), telemetry gates (``telemetry``), manifest
builds and validation (``manifests``, against the CRD schemas ``vendored`` from upstream).
"""
