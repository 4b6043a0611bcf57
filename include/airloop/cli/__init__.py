"""The command line's own machinery (``python -m airloop``): the demo and the supervisor of its services."""
