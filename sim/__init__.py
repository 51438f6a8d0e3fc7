"""Runners: host, QEMU, Renode and serial targets behind one interface."""
