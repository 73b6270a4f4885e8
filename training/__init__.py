"""edgeops training side: LDO data, snapshots, the failure-mode model, training, evaluation and export.

Imports the small core of ``tools`` (errors, typed YAML, logging, stores); ``tools`` never imports this
package, so the delivery side stays free of torch.
"""
