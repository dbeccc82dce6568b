"""Conformance: the wire prober against our node and DCMTK, and fuzzing (PS3.8, PS3.7)."""
