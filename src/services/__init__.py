"""Service classes of PS3.4, the node and the command-line interface."""
