-- Grants and policies of friendships, events, like groups, chats and
-- notifications: each person reads what concerns them; writes go through the
-- api functions only.

grant select on app.friendships to authenticated, service_role;
create policy "Users can read their own friendships" on app.friendships
    for select to authenticated
    using ((select auth.uid()) in (user_low, user_high));

grant select on app.events to authenticated, service_role;
create policy "Signed-in users can read events" on app.events
    for select to authenticated
    using (true);

grant select on app.event_authors to authenticated, service_role;
create policy "Signed-in users can read event authors" on app.event_authors
    for select to authenticated
    using (true);

grant select on app.like_groups to authenticated, service_role;
create policy "Members, event creators and authors can read like groups" on app.like_groups
    for select to authenticated
    using (private.can_view_like_group(id, event_id));

grant select on app.like_group_members to authenticated, service_role;
create policy "Whoever sees a like group can read its members" on app.like_group_members
    for select to authenticated
    using (private.can_view_like_group(group_id, event_id));

grant select on app.like_group_approvals to authenticated, service_role;
create policy "Whoever sees a like group can read its approvals" on app.like_group_approvals
    for select to authenticated
    using (private.can_view_like_group(group_id, event_id));

grant select on app.chats to authenticated, service_role;
create policy "Participants can read their chats" on app.chats
    for select to authenticated
    using (private.is_chat_participant(id, event_id));

grant select on app.chat_participants to authenticated, service_role;
create policy "Participants can read their chats' participants" on app.chat_participants
    for select to authenticated
    using (private.is_chat_participant(chat_id, event_id));

grant select on app.notifications to authenticated, service_role;
create policy "Users can read their own notifications" on app.notifications
    for select to authenticated
    using (user_id = (select auth.uid()));
