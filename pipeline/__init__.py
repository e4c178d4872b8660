"""The core library, one folder per stage (docs/ARCHITECTURE.md); its root modules (config, model,
paths, formats, heartbeat, quiet, stop) are the shared contract every stage may import.

Imports no UI framework and nothing from dashboard/ or gradio_app/ (tests/test_architecture.py).
"""
