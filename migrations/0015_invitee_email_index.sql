-- my_pair_invites finds the invites sent to the caller's address by comparing
-- invitee_email itself (create_pair_invite stores it lower-cased). The
-- expression index on lower(invitee_email) matched no query, so that lookup
-- read the whole table; the index is now on the column compared.
-- depends: 0014_plain_text
drop index app.pair_invites_invitee_email_idx;
create index pair_invites_invitee_email_idx on app.pair_invites (invitee_email)
    where invitee_email is not null;
