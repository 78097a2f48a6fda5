"""The Streamlit side: app entry point, cached data access, chart builders, shared widgets."""
