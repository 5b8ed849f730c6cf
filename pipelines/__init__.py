"""ragline's library: sources, features, embedding, storage, retrieval, generation, settings.

Imports only third-party libraries: flows, serving and notebooks all build on this package.
"""
