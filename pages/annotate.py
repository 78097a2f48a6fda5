"""Annotate & fit (being built in this session)."""

import streamlit as st

st.title("Annotate & fit")
st.info("This page is being built.")
