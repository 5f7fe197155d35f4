"""Corpus schema, synthetic hospital generator and MedForget-layout interchange."""
