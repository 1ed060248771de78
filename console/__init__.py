"""The Streamlit console: pages in `app_pages/`, data only through `queries/`."""
