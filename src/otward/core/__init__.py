"""Pure PKI logic: values in, decisions out. No files, sockets, database or clock."""
