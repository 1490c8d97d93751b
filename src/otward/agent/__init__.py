"""The device agent: makes its key in place, enrols over EST and renews before expiry."""
