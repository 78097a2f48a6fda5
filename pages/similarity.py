"""Similarity (being built in this session)."""

import streamlit as st

st.title("Similarity")
st.info("This page is being built.")
