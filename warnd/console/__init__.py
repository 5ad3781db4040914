"""The operator console (控制台): HTML shells, their scripts and vendored libraries."""
