"""Model readers: bytes on disk -> graph IR."""
