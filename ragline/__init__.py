"""ragline's command line (`ragline --help`); the library lives in `pipelines`."""

__version__ = "0.1.0"
