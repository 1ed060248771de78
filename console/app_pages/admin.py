"""Users & policies, for admins: users and roles, and the SLA policy in force."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

from console._auth import page_user
from console._resources import act, engine, load, settings, show_flash
from queries.roles import ROLES
from queries.users import add_user, list_users, set_role
from sla.policy import DEFAULT_POLICY_FILE

user = page_user("users.manage")
st.title("Users & policies")
show_flash()
users = load(list_users, engine(), user.username)
st.dataframe(pd.DataFrame([asdict(u) for u in users]), hide_index=True)

left, right = st.columns(2)
with left.form("add_user", clear_on_submit=True):
    st.markdown("**Add a user**")
    username = st.text_input("User name")
    role = st.selectbox("Role", ROLES)
    password = st.text_input("Initial password", type="password")
    if st.form_submit_button("Add"):
        if act(add_user, engine(), user.username, username.strip(), role, password) is not None:
            st.session_state["flash"] = ("ok", f"added {username} ({role})")
        st.rerun()
with right.form("set_role"):
    st.markdown("**Change a role**")
    target = st.selectbox("User", [u.username for u in users])
    new_role = st.selectbox("New role", ROLES, key="new_role")
    if st.form_submit_button("Change"):
        if act(set_role, engine(), user.username, target, new_role) is not None:
            st.session_state["flash"] = ("ok", f"{target} is now {new_role}")
        st.rerun()

st.subheader("SLA policy in force")
path = settings().sla_config or DEFAULT_POLICY_FILE
st.caption(str(path))
st.code(path.read_text(), language="yaml")
