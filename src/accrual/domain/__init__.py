"""Pure billing rules: no I/O, no framework imports, no clock reads."""
