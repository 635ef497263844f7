"""Datasets that ship with equivar or are generated on demand by a real physics code (no download
at run time): one module per dataset."""
