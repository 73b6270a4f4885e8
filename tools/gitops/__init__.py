"""What CI runners run: release pull requests, wave by wave (``promotion``), the required PR check
(``policy``), revoked versions (``revocations``), forges (``forge``, ``github``), the git history of rings
(``gitrepo``), telemetry gates (``telemetry``), manifest builds and validation (``manifests``, against the CRD
schemas ``vendored`` from upstream).
"""
