"""Profiles (being built in this session)."""

import streamlit as st

st.title("Profiles")
st.info("This page is being built.")
