"""Samples (being built in this session)."""

import streamlit as st

st.title("Samples")
st.info("This page is being built.")
