-- Grants and policies of registrations, pair invitations and the outbox.
-- Emails of invitees are visible to their inviter only; tokens are hashes and
-- unreadable by users; the outbox is read by nobody but the owner's functions.

grant select on app.registrations to authenticated, service_role;
create policy "Users can read their own registrations" on app.registrations
    for select to authenticated
    using (user_id = (select auth.uid()));

grant select on app.pair_invites to authenticated, service_role;
create policy "Inviters can read their invitations" on app.pair_invites
    for select to authenticated
    using (inviter_id = (select auth.uid()));

-- Tokens and the outbox: RLS on, granted to nobody but service_role (which
-- bypasses RLS), so no policy; only the api functions and the mail workers
-- (private.mail_*) touch them.
grant select on app.pair_invite_tokens to service_role;
grant select on app.mail_outbox to service_role;
