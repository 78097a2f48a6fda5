"""Your data: import a file from the browser (as a job), and delete what is stored."""

import streamlit as st

from dashboard import owndata, workbench

st.title("Your data")
workbench.show_flash()
tab_import, tab_delete = st.tabs(["Import a file", "Delete"])
with tab_import:
    owndata.import_section()
    st.subheader("Import jobs")
    owndata.watch()
with tab_delete:
    owndata.delete_section()
