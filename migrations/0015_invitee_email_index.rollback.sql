drop index app.pair_invites_invitee_email_idx;
create index pair_invites_invitee_email_idx on app.pair_invites (lower(invitee_email))
    where invitee_email is not null;
