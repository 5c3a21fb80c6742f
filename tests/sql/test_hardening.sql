-- Hardening (issue 11, items 7-14), what the database promises:
--   7. exactly one plain address per emailed invitation (400 otherwise);
--   8. invitation mail limited per recipient address across inviters (the
--      invite is created, the answer unchanged, no message queued), no
--      user-written text in the queued message;
--   9. control characters refused in names and titles (400), cleaned by the
--      auth.users trigger, forbidden by check constraints; delivery attempts
--      capped (failed_at), failed messages never claimed and counted;
--  12. add_event_author refuses a member of a pending like group (409);
--  13. a pair-invite token works only for the person it was issued to (403);
--  14. the audit log is partitioned by month, pruned by private.audit_prune.
-- Items 10, 11 and the refusal counts of 14 are in test_group_invites.sql,
-- test_like_groups.sql and test_rate_limit_audit.sql.
begin;
select plan(52);

insert into auth.users (id, email, raw_user_meta_data) values
    ('c7000000-0000-4000-8000-000000000001', 'h-typist@example.com', '{"display_name": "Typist"}'),
    ('c7000000-0000-4000-8000-000000000002', 'h-inv2@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000003', 'h-inv3@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000004', 'h-inv4@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000005', 'h-inv5@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000006', 'h-holder@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000007', 'h-thief@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000008', 'h-leader@example.com', '{}'),
    ('c7000000-0000-4000-8000-000000000009', 'h-organizer@example.com', '{}'),
    -- The trigger cleans control characters out of the display name (and of
    -- the email's local part when there is none): the account is created.
    ('c7000000-0000-4000-8000-000000000010', 'h-crlf@example.com',
     jsonb_build_object('display_name', E'Support\r\nTeam:\treset\u202e now')),
    ('c7000000-0000-4000-8000-000000000011', E'h-\u2028only@example.com',
     jsonb_build_object('display_name', E'\r\n\t'));
insert into app.events (id, creator_id, title) values
    ('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000009', 'Hard Cup');
insert into app.event_authors (event_id, user_id) values
    ('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000009');
insert into app.friendships (user_low, user_high, requester_id, status) values
    ('c7000000-0000-4000-8000-000000000006', 'c7000000-0000-4000-8000-000000000008',
     'c7000000-0000-4000-8000-000000000008', 'accepted');

create temp table vars (name text primary key, value jsonb);
grant all on vars to authenticated, service_role;

-- ---------------------------------------------------------------------------
-- 7. One plain address per invitation
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000001');

select is(
    array(select test_support.attempt(format('api.create_pair_invite(%L, %L)',
              'c7100000-0000-4000-8000-000000000001', a)) #>> '{body,details}'
          from unnest(array[
              'root,postmaster,victim@example.com', 'a@b@example.com', '<victim@example.com>',
              'Victim <victim@example.com>', 'vic tim@example.com', E'victim@example.com\r\nBcc: x@example.com',
              E'victim@example.com\n', E'vic\ttim@example.com', 'victim@example.com;x@example.com',
              '"quoted"@example.com', 'a..b@example.com', '.a@example.com', 'a.@example.com',
              'a@-example.com', 'a@example', 'a@example..com', 'victim(comment)@example.com',
              repeat('a', 65) || '@example.com', 'a@' || repeat('b', 64) || '.com',
              'a@' || repeat('bbbbbbbbb.', 25) || 'com'
          ]) a),
    array_fill('invitee_email'::text, array[20]),
    'invitee_email: lists, second @, angle brackets, spaces, CR/LF, tabs, quotes, comments, bad dots and over-long parts are 400'
);
select is(test_support.sc(test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'a,b@example.com')$$)),
    '400 PT400', 'invitee_email: a comma is answered 400');
select is(
    array(select test_support.attempt(format('api.create_pair_invite(%L, %L)',
              'c7100000-0000-4000-8000-000000000001', a)) -> 'status'
          from unnest(array['o''brien+cup@mail.example.co.uk', ' Mixed.Case@Example.COM ',
                            repeat('a', 64) || '@example.com']) a),
    array['null', 'null', 'null']::jsonb[],
    'invitee_email: plain addresses (apostrophe, plus, subdomains, 64-character local part) are accepted'
);
reset role;
select results_eq(
    $$select to_email from app.mail_outbox where to_email like '%example.co%'
        and (to_email like 'o''brien%' or to_email like 'mixed.case%' or to_email like 'aaaa%')
      order by to_email$$,
    $$values (repeat('a', 64) || '@example.com'), ('mixed.case@example.com'), ('o''brien+cup@mail.example.co.uk')$$,
    'the accepted addresses are queued, one message each, lower-cased and trimmed');

-- ---------------------------------------------------------------------------
-- 8. Invitation mail per recipient address, across inviters; no user text
-- ---------------------------------------------------------------------------

select is((select max_attempts || '/' || window_seconds from app.rate_limits where bucket = 'invite_mail'),
    '3/86400', 'invite_mail: 3 messages a day per recipient address by default');

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000001');
insert into vars values ('m1', test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'popular@example.com')$$));
select test_support.sign_in('c7000000-0000-4000-8000-000000000002');
insert into vars values ('m2', test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'popular@example.com')$$));
select test_support.sign_in('c7000000-0000-4000-8000-000000000003');
insert into vars values ('m3', test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'Popular@example.com')$$));
select test_support.sign_in('c7000000-0000-4000-8000-000000000004');
insert into vars values ('m4', test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'popular@example.com')$$));
select test_support.sign_in('c7000000-0000-4000-8000-000000000005');
insert into vars values ('m5', test_support.attempt($$api.create_pair_invite('c7100000-0000-4000-8000-000000000001', 'popular@example.com')$$));
reset role;

select is(
    array(select jsonb_build_object('status', v.value -> 'status', 'keys',
              (select jsonb_agg(k order by k) from jsonb_object_keys(v.value -> 'body') k))
          from vars v where v.name in ('m1', 'm2', 'm3', 'm4', 'm5') order by v.name),
    array_fill('{"status": null, "keys": ["expires_at", "id", "short_code"]}'::jsonb, array[5]),
    'invite_mail: five inviters of one address get the same answer, over the limit or not'
);
select is((select count(*) from app.pair_invites where invitee_email = 'popular@example.com' and status = 'sent'),
    5::bigint, 'invite_mail: all five invites exist');
select is((select count(*) from app.mail_outbox where to_email = 'popular@example.com'),
    3::bigint, 'invite_mail: three messages are queued for the address, no more');
select results_eq(
    $$select array(select jsonb_object_keys(data) order by 1) from app.mail_outbox
      where to_email = 'popular@example.com' limit 1$$,
    $$values (array['expires_at', 'invite_id', 'locale', 'short_code'])$$,
    'the queued message holds the code, expiry, invite id and language only: no name, no title');

-- ---------------------------------------------------------------------------
-- 9. Control characters in names and titles; delivery attempts
-- ---------------------------------------------------------------------------

select is((select display_name from app.profiles where id = 'c7000000-0000-4000-8000-000000000010'),
    'Support Team: reset now', 'trigger: control characters in display_name become single spaces');
select is((select display_name from app.profiles where id = 'c7000000-0000-4000-8000-000000000011'),
    'h- only', 'trigger: a name of control characters alone falls back to the cleaned local part');

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000001');
select throws_ok($$select api.update_profile(E'Eve\r\nBcc: all')$$, '22023',
    'display_name must not contain line breaks or other control characters.',
    'update_profile: CR/LF is 400');
select throws_ok($$select api.update_profile(E'Eve\u202eevil')$$, '22023', null,
    'update_profile: a bidirectional override is 400');
select throws_ok($$select api.update_profile(E'Eve\x7f')$$, '22023', null,
    'update_profile: DEL is 400');
select lives_ok($$select api.update_profile('Zoë 🎉 O''Neil')$$,
    'update_profile: accents, emoji and apostrophes are fine');
select throws_ok($$select api.create_group(E'Group\nSubject: x')$$, '22023',
    'name must not contain line breaks or other control characters.',
    'create_group: a line feed is 400');
select throws_ok($$select api.create_group(E'Group\u2028x')$$, '22023', null,
    'create_group: a line separator is 400');
select throws_ok($$select api.create_event(E'Cup\r')$$, '22023',
    'title must not contain line breaks or other control characters.',
    'create_event: a carriage return is 400');
select throws_ok($$select api.create_event(E'Cup\u0085')$$, '22023', null,
    'create_event: a C1 next-line is 400');
reset role;

select throws_ok($$insert into app.groups (name, creator_id) values (E'a\nb', 'c7000000-0000-4000-8000-000000000001')$$,
    '23514', null, 'the table refuses a group name with a line feed too (check constraint)');
select throws_ok($$update app.events set title = E'x\ty' where id = 'c7100000-0000-4000-8000-000000000001'$$,
    '23514', null, 'the table refuses an event title with a tab too');

delete from app.mail_outbox;
insert into app.mail_outbox (id, to_email, template, data, attempts) values
    ('c7200000-0000-4000-8000-000000000001', 'tired@example.com', 'pair_invite', '{}', 6),
    ('c7200000-0000-4000-8000-000000000002', 'broken@example.com', 'pair_invite', '{}', 0),
    ('c7200000-0000-4000-8000-000000000003', 'fine@example.com', 'pair_invite', '{}', 0);
set local role service_role;
do $$ begin perform private.mail_failed('c7200000-0000-4000-8000-000000000001', 'try 7', 300, 8); end $$;
do $$ begin perform private.mail_failed('c7200000-0000-4000-8000-000000000002', 'cannot build', 300, 8, true); end $$;
reset role;
select results_eq(
    $$select id, attempts, failed_at is not null from app.mail_outbox order by id$$,
    $$values ('c7200000-0000-4000-8000-000000000001'::uuid, 7, false),
             ('c7200000-0000-4000-8000-000000000002'::uuid, 1, true),
             ('c7200000-0000-4000-8000-000000000003'::uuid, 0, false)$$,
    'worker: the seventh failure of eight allowed is retried; a permanent failure is failed at once');
update app.mail_outbox set send_after = now() - interval '1 second';
set local role service_role;
do $$ begin perform private.mail_failed('c7200000-0000-4000-8000-000000000001', 'try 8', 300, 8); end $$;
select results_eq($$select to_email from private.mail_claim()$$, $$values ('fine@example.com'::text)$$,
    'worker: after the eighth failure the message is failed; failed messages are never claimed');
select is(private.mail_failed_count(), 2::bigint, 'worker: two messages are counted as failed');
select is(private.mail_queue_depth(), 1::bigint, 'worker: the queue depth counts only what may still be sent');
reset role;
select is((select failed_at is not null from app.mail_outbox where id = 'c7200000-0000-4000-8000-000000000001'),
    true, 'the message given up on has failed_at');

-- ---------------------------------------------------------------------------
-- 12. Authors and members of pending like groups, both ways
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000008');
insert into vars values ('lg', api.like_event('c7100000-0000-4000-8000-000000000001',
    array['c7000000-0000-4000-8000-000000000006']::uuid[]));
select test_support.sign_in('c7000000-0000-4000-8000-000000000009');
select throws_ok($$select api.add_event_author('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000006')$$,
    'PT409', 'A member of a pending like group of the event cannot be one of its authors.',
    'creator: adding a member of a pending like group as author is 409');
select throws_ok($$select api.add_event_author('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000008')$$,
    'PT409', null, 'creator: adding the group''s creator as author is 409 too');
select lives_ok($$select api.add_event_author('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000007')$$,
    'creator: someone in no like group can be added');
select test_support.sign_in('c7000000-0000-4000-8000-000000000008');
select lives_ok(format('select api.remove_like_group_member(%L, %L)', test_support.id('lg'),
    'c7000000-0000-4000-8000-000000000006'), 'leader: removes the member');
select test_support.sign_in('c7000000-0000-4000-8000-000000000009');
select lives_ok($$select api.add_event_author('c7100000-0000-4000-8000-000000000001', 'c7000000-0000-4000-8000-000000000006')$$,
    'creator: once out of the pending group, the user can be added as author');
select test_support.sign_in('c7000000-0000-4000-8000-000000000008');
select throws_ok(format('select api.add_like_group_member(%L, %L)', test_support.id('lg'),
    'c7000000-0000-4000-8000-000000000006'), '42501', 'An author of the event cannot be in a like group.',
    'leader: the other way round, an author cannot be added to a like group');
reset role;
select is_empty(
    $$select m.user_id from app.like_group_members m
      join app.event_authors a on a.event_id = m.event_id and a.user_id = m.user_id
      where m.pending$$,
    'nobody is both an author and a member of a pending like group of one event');

-- ---------------------------------------------------------------------------
-- 11. Removing members: outsiders learn neither existence nor state
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000009');
select is(api.reject_like_group(test_support.id('lg')) ->> 'status', 'rejected',
    'organizer: rejects the group (it is no longer pending)');
select test_support.sign_in('c7000000-0000-4000-8000-000000000005');
select throws_ok(format('select api.remove_like_group_member(%L, %L)', test_support.id('lg'),
    'c7000000-0000-4000-8000-000000000005'), 'PT404', 'Like group not found.',
    'outsider: removing themself from a decided group they are not in is 404, not its state');
select throws_ok(format('select api.remove_like_group_member(%L, %L)', gen_random_uuid(),
    'c7000000-0000-4000-8000-000000000005'), 'PT404', 'Like group not found.',
    'outsider: exactly as for a group that does not exist');
select test_support.sign_in('c7000000-0000-4000-8000-000000000008');
select throws_ok(format('select api.remove_like_group_member(%L, %L)', test_support.id('lg'),
    'c7000000-0000-4000-8000-000000000008'), 'PT400', null,
    'leader: a member still learns the state (400)');
reset role;

-- ---------------------------------------------------------------------------
-- 10. revoke_group_invite is counted and audited
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000004');
select is(
    array(select test_support.sc(test_support.attempt(format('api.revoke_group_invite(%L)', gen_random_uuid())))
          from generate_series(1, 21)),
    array_fill('404 PT404'::text, array[20]) || '429 PT429'::text,
    'prober: twenty unknown codes are 404, the twenty-first revocation in a minute is 429');
reset role;
select results_eq(
    $$select outcome, status, count(*) from app.audit_log
      where actor_id = 'c7000000-0000-4000-8000-000000000004' and action = 'group_invite.revoke'
      group by 1, 2 order by 1$$,
    $$values ('not_found'::text, 404, 20::bigint), ('rate_limited', 429, 1::bigint)$$,
    'prober: every revocation attempt is audited, the refused one too');

-- ---------------------------------------------------------------------------
-- 13. A pair-invite token works only for the person it was issued to
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('c7000000-0000-4000-8000-000000000002');
insert into vars values ('code_invite', api.create_pair_invite('c7100000-0000-4000-8000-000000000001'));
select test_support.sign_in('c7000000-0000-4000-8000-000000000006');
insert into vars values ('holder', api.join_pair_invite(test_support.v('code_invite') ->> 'short_code'));
select test_support.sign_in('c7000000-0000-4000-8000-000000000007');
select is(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('holder') ->> 'token')),
    jsonb_build_object('status', '403', 'headers', null, 'body', jsonb_build_object(
        'code', '42501', 'message', 'This token was issued to someone else.',
        'details', 'not_issued_to_caller', 'hint', null)),
    'thief: accepting with someone else''s token is 403');
select is(test_support.sc(test_support.attempt(format('api.decline_pair_invite(%L)', test_support.v('holder') ->> 'token'))),
    '403 42501', 'thief: declining with someone else''s token is 403');
select test_support.sign_in('c7000000-0000-4000-8000-000000000006');
select is(test_support.attempt(format('api.accept_pair_invite(%L)', test_support.v('holder') ->> 'token')) -> 'status',
    'null'::jsonb, 'holder: the person the token was issued to accepts');
reset role;
select results_eq(
    $$select outcome, status from app.audit_log
      where actor_id = 'c7000000-0000-4000-8000-000000000007' and action like 'pair_invite.%' order by id$$,
    $$values ('not_issued_to_caller'::text, 403), ('not_issued_to_caller', 403)$$,
    'the refused attempts are audited');

-- ---------------------------------------------------------------------------
-- 14. Audit retention: monthly partitions, pruned by age
-- ---------------------------------------------------------------------------

select is((select relkind::text from pg_class where oid = 'app.audit_log'::regclass), 'p',
    'the audit log is partitioned');
select ok(
    (select count(*) from pg_inherits where inhparent = 'app.audit_log'::regclass
       and inhrelid::regclass::text ~ '^app\.audit_log_p[0-9]{6}$') >= 4,
    'it has monthly partitions: this month and three ahead at least');
select is(
    (select tableoid::regclass::text from app.audit_log order by id desc limit 1),
    'app.audit_log_p' || to_char(now() at time zone 'UTC', 'YYYYMM'),
    'new entries go into this month''s partition');
select is_empty(
    $$select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'app.audit_log'::regclass and not c.relrowsecurity$$,
    'every partition has row-level security');

create table app.audit_log_p201901 partition of app.audit_log
    for values from ('2019-01-01 00:00+00') to ('2019-02-01 00:00+00');
insert into app.audit_log (actor_id, action, outcome, status, created_at) values
    (null, 'test.old', 'kept?', 200, '2019-01-15 12:00+00'),
    (null, 'test.older', 'kept?', 200, '2018-06-15 12:00+00');
insert into app.audit_refusals (actor_id, action, outcome, window_start) values
    ('c7000000-0000-4000-8000-000000000001', 'test.old', 'rate_limited', '2019-01-15 12:00+00');
select throws_ok($$delete from app.audit_log_default where action = 'test.older'$$, '42501',
    'The audit log is append-only.', 'the default partition is append-only too');
select throws_ok($$select private.audit_prune(interval '1 hour')$$, '22023', null,
    'audit_prune keeps at least a day');
select results_eq($$select private.audit_prune(interval '400 days')$$,
    $$values ('dropped app.audit_log_p201901'::text), ('deleted 1 rows of app.audit_log_default'),
             ('deleted 1 rows of app.audit_refusals')$$,
    'audit_prune drops the old month, deletes old rows of the default partition and old refusal counts');
select is((select count(*) from app.audit_log where action in ('test.old', 'test.older')), 0::bigint,
    'the old entries are gone');
select throws_ok($$delete from app.audit_log where id = (select max(id) from app.audit_log)$$, '42501', null,
    'after pruning, the log is append-only again');

select * from finish();
rollback;
