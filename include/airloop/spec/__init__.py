"""Model specs: one YAML file per model says everything specific to it (``schema`` types, ``loader`` reads them)."""

from airloop.spec.loader import Catalog, SpecError, catalog, load_spec, resolve, spec_files
from airloop.spec.schema import ModelSpec

__all__ = ["Catalog", "ModelSpec", "SpecError", "catalog", "load_spec", "resolve", "spec_files"]
