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

grant select on app.group_invites to authenticated, service_role;
create policy "Members can read their groups' invites" on app.group_invites
    for select to authenticated
    using (private.is_group_member(group_id));
