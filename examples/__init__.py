"""Examples of extending crowdstream: PEs written the way a user writes one."""
