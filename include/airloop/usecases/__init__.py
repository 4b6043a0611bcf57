"""Code of particular models, named by their specs (``models/<name>.yaml``) where YAML cannot say something.

Nothing in the platform's packages imports from here: a spec names what it needs as an entry point
(``airloop.usecases.<name>.<module>:<attribute>``), resolved when a task, a model or the service uses it.
"""
