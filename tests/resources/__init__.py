"""Modules the tests import: deliberately broken FaaS and string-annotated ones."""
