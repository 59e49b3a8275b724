"""Retrieval evaluation of the asymmetric student/teacher pair, and int8 calibration."""
