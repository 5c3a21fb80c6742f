-- Limits on the stop link (issue 18): api.stop_invitations is the one definer
-- function anon may run, so its calls are counted per client address and per
-- stop token, in the limiter's table of limits that operators change.
-- depends: 0008_hardening

insert into app.rate_limits (bucket, max_attempts, window_seconds, description) values
    ('stop_client', 30, 600,
     'stop links followed from one client address (an IPv6 client by its /64), '
     'signed in or not; valid or not'),
    ('stop_token', 5, 600, 'uses of one stop link')
on conflict (bucket) do nothing;

-- revoke_invite now counts pair-invite revokes too (api.revoke_pair_invite).
update app.rate_limits set description = 'revoking group invites (by code or id) and pair invites'
where bucket = 'revoke_invite';
