"""The preference-dissection engine: store, importers, annotation, fitting, comparison.

Importable and testable without Streamlit; ``python -m core`` is its command line.
"""
