"""Tools for testing DICOM nodes: a raw peer (:mod:`.rawpeer`), the conformance prober
(:mod:`.prober`, ``dicomwire probe``), and deterministic synthetic corpora (:mod:`.corpus`)."""
