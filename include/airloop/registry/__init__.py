"""The model registry: alias names, tag keys, the client, and moving aliases with an audit trail (``contract``,
``client``, ``aliases``, ``actions``)."""
