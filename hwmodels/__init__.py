"""Hardware models of the targets (one TOML per chip) and their loader."""
