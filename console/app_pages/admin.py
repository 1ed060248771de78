"""Users & policies, for admins: users (add, role, disable and enable, password, name and
e-mail) and the SLA policy in force."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

from console._auth import act, page_user
from console._resources import engine, load, settings, show_flash
from q2c.vocabulary import ROLES
from queries.user_admin import (
    add_user,
    list_users,
    reset_password,
    set_disabled,
    set_profile,
    set_role,
)
from sla.policy import DEFAULT_POLICY_FILE

user = page_user("users.manage")


def _done(message: str) -> None:
    st.session_state["flash"] = ("ok", message)


st.title("Users & policies")
show_flash()
users = load(list_users, engine(), user.username)
table = pd.DataFrame([asdict(u) for u in users])
st.dataframe(
    table[["username", "display_name", "email", "role", "disabled"]],
    hide_index=True,
    column_config={"disabled": st.column_config.CheckboxColumn("disabled")},
)

NEW_USER_KEYS = ("new_user_name", "new_user_role", "new_user_password")
if st.session_state.pop("new_user_added", False):  # emptied for the next, once added
    # Set, not deleted: a deleted widget value is not sent to the browser, which would
    # keep showing (and sending back) the name and password just used.
    for key, empty in zip(NEW_USER_KEYS, ("", ROLES[0], ""), strict=True):
        st.session_state[key] = empty
left, right = st.columns(2)
# Not cleared on submit: a refused user (a short password, say) is corrected, not retyped.
with left.form("add_user"):
    st.markdown("**Add a user**")
    username = st.text_input("User name", key=NEW_USER_KEYS[0])
    role = st.selectbox("Role", ROLES, key=NEW_USER_KEYS[1])
    password = st.text_input("Initial password", type="password", key=NEW_USER_KEYS[2])
    if st.form_submit_button("Add"):
        if act(add_user, engine(), user.username, username.strip(), role, password) is not None:
            _done(f"added {username} ({role})")
            st.session_state["new_user_added"] = True
        st.rerun()

with right:
    st.markdown("**Manage a user**")
    by_name = {u.username: u for u in users}
    target = by_name[
        st.selectbox(
            "User",
            list(by_name),
            key="manage_user",
            format_func=lambda name: (
                f"{name} · {by_name[name].display_name}"
                + (" (disabled)" if by_name[name].disabled else "")
            ),
        )
    ]
    role_tab, access_tab, password_tab, profile_tab = st.tabs(
        ["Role", "Enable / disable", "Password", "Name & e-mail"]
    )
    with role_tab.form("set_role"):
        new_role = st.selectbox(
            "New role", ROLES, index=ROLES.index(target.role), key=f"new_role:{target.username}"
        )
        st.caption("Their console sessions end: they sign in again with the new role.")
        if st.form_submit_button("Change role"):
            if act(set_role, engine(), user.username, target.username, new_role) is not None:
                _done(f"{target.username} is now {new_role}")
            st.rerun()
    with access_tab:
        if target.disabled:
            st.caption(f"{target.username} is disabled: no sign-in, no token works.")
            if st.button("Enable", key="enable_user"):
                if act(set_disabled, engine(), user.username, target.username, False):
                    _done(f"{target.username} is enabled")
                st.rerun()
        else:
            st.caption("Disabling signs them out at once; their tokens stop working.")
            if st.button("Disable", key="disable_user", type="primary"):
                if act(set_disabled, engine(), user.username, target.username, True):
                    _done(f"{target.username} is disabled")
                st.rerun()
    with password_tab.form("reset_password", clear_on_submit=True):
        new_password = st.text_input("New password", type="password", key="new_password")
        st.caption("Their console sessions end; tell them the new password another way.")
        if st.form_submit_button("Reset password"):
            if act(reset_password, engine(), user.username, target.username, new_password):
                _done(f"{target.username} has a new password")
            st.rerun()
    with profile_tab.form("set_profile"):
        display_name = st.text_input(
            "Display name", target.display_name, key=f"name:{target.username}"
        )
        email = st.text_input("E-mail", target.email, key=f"email:{target.username}")
        if st.form_submit_button("Save"):
            if act(set_profile, engine(), user.username, target.username, display_name, email):
                _done(f"saved {target.username}'s name and e-mail")
            st.rerun()

st.subheader("SLA policy in force")
path = settings().sla_config or DEFAULT_POLICY_FILE
st.caption(str(path))
st.code(path.read_text(), language="yaml")
