"""One module per console page: its routes, each declaring the permission it needs."""
