"""The service core between HTTP and the binaries: settings, model state, the job queue and events.

Plain Python classes with no Litestar import, so tests can drive them directly.
"""
