-- Grants and policies of groups, their members and invites: members read
-- their groups; writes go through the api functions only.

grant select on app.groups to authenticated, service_role;
create policy "Members can read their groups" on app.groups
    for select to authenticated
    using (private.is_group_member(id));

grant select on app.group_members to authenticated, service_role;
create policy "Members can read their groups' members" on app.group_members
    for select to authenticated
    using (private.is_group_member(group_id));

-- Every column but code_hash: members have no use for the hash.
grant select (id, group_id, created_by, code_hint, expires_at, max_uses, use_count, revoked_at,
              created_at)
    on app.group_invites to authenticated;
grant select on app.group_invites to service_role;
create policy "Members can read their groups' invites" on app.group_invites
    for select to authenticated
    using (private.is_group_member(group_id));
