"""Judges (being built in this session)."""

import streamlit as st

st.title("Judges")
st.info("This page is being built.")
