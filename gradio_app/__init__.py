"""The public Gradio app: upload a chest X-ray, get a verdict, its probability and its reasons.

``gradio_app.app.build_demo`` builds the app, ``gradio_app.service`` holds everything that is not
UI (which run is served, checking and scoring an upload), ``python -m gradio_app`` launches it.
Nothing is imported here, so that ``__main__`` can point Gradio at its upload folder first.
"""
