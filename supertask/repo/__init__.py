"""The data repository: units, registry, datastore, Butler, RepoGraph."""
