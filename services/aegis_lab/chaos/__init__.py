"""Fault suite (`aegis-lab chaos`): real processes, real faults, every reply checked."""
