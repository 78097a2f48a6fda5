"""Simulator (being built in this session)."""

import streamlit as st

st.title("Simulator")
st.info("This page is being built.")
