"""The command line's own machinery (``python -m airloop``): the demo, the supervisor of its services and the
configuration reference."""
