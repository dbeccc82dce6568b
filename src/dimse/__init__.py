"""DIMSE messaging (PS3.7): command sets, status codes, fragmentation and the dispatcher."""
