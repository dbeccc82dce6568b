"""Tools for testing DICOM nodes: synthetic corpora (and, later, the raw peer and prober)."""
