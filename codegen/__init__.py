"""IR + schedule -> C source (renders firmware_templates/)."""
