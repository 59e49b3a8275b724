"""Fault suite (`aegis-serve chaos`): real processes, real faults, every reply checked."""
