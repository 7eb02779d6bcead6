"""Tests where the trainer and the edge meet (TensorFlow needed): parity of the edge with what the trainer built
in the same run, freshly trained bundles served by the edge, and the staleness check of tests/data/trained."""
