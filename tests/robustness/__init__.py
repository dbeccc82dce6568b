"""Robustness under load and abuse (issue 8): bounded in time, loopback only."""
