"""Board data files (one TOML per board)."""
