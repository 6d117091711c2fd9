"""Background work: runs what falls due on the real clock, and housekeeping."""
