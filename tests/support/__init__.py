"""Test support shared by the suites: real bundles, brokers, processes and a pty device.

Fixtures defined here are registered once for the whole suite by ``pytest_plugins`` in tests/conftest.py, so test
modules import helpers only, never fixtures.
"""
