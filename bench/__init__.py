"""The benchmark of the gateway against the database itself: `python -m bench`
(`make bench`); see bench/README.md."""
