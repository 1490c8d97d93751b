"""What a plant's IT installs otward with: systemd unit files (``otward deploy systemd``)."""

__all__: list[str] = []
