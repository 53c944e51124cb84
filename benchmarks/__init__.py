"""Benchmarks (scripts run by path, see README "Benchmarks") and the fault suite's figures
(``python -m benchmarks.faults``; the scenarios live in ``benchmarks/_faults``)."""
