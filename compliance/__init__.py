"""Forget-request lifecycle, audit chain, signing, REST API and (later) jobs and certificates."""
