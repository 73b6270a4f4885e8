"""The contract between the training side and the delivery side: the signed model bundle in the store
(``bundle``) and the release file a ring pins (``release``). Training writes them; the edge and GitOps read
them. Imports only ``tools.core``, and from it only what runs on the base dependencies.
"""
