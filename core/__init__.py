"""The base app every other app builds on: the audit chain, signing keys, the data directory and
its secrets, and the Django set-up of command-line tools. It imports nothing from the apps above it."""
