-- Groups and invite codes (contract section 3, "Groups and invite codes"),
-- actor by actor: owner, member, stranger (signed in, not a member),
-- anonymous. Refused joins, previews and invite creations do not raise: they
-- set response.status and return {code, message, details, hint}, so
-- test_support.attempt (tests/sql/support.sql) reads both the body and
-- response.status of one call (its headers play no part here).
begin;
select plan(90);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

-- Rate limiting has its own file (test_rate_limit_audit.sql); here it must not
-- get in the way of the many attempts one user makes.
update app.rate_limits set max_attempts = 1000 where bucket in ('join_code', 'create_invite');

insert into auth.users (id, email) values
    ('00000000-0000-4000-8000-000000000001', 'owner@example.com'),
    ('00000000-0000-4000-8000-000000000002', 'member@example.com'),
    ('00000000-0000-4000-8000-000000000003', 'stranger@example.com'),
    ('00000000-0000-4000-8000-000000000004', 'joiner@example.com'),
    ('00000000-0000-4000-8000-000000000005', 'latecomer@example.com'),
    ('00000000-0000-4000-8000-000000000006', 'outsider@example.com'),
    ('00000000-0000-4000-8000-000000000007', 'younger@example.com'),
    ('00000000-0000-4000-8000-000000000009', 'elder@example.com');

-- Values carried from one statement to the next: name -> the JSON a call returned.
create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated;

-- The invite code of a stored invite.
create function pg_temp.code(text) returns text
language sql stable as $$ select value ->> 'code' from vars where name = $1 $$;

-- The parts of a refused attempt that the contract fixes: {status, code, details}
-- (or what was raised, if the call raised).
create function pg_temp.refusal(call text) returns jsonb
language sql as $$
    select case when a ? 'raised' then a
                else jsonb_build_object('status', a -> 'status', 'code', a -> 'body' -> 'code',
                                        'details', a -> 'body' -> 'details') end
    from test_support.attempt(call) a
$$;

grant execute on function pg_temp.code(text), pg_temp.refusal(text) to anon, authenticated;

-- ---------------------------------------------------------------------------
-- Owner
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

insert into vars values ('group', api.create_group('  Book club  '));

select is(
    test_support.v('group'),
    jsonb_build_object('id', test_support.v('group') -> 'id', 'name', 'Book club',
                       'creator_id', '00000000-0000-4000-8000-000000000001', 'created_at', now()),
    'owner: create_group trims the name and returns {id, name, creator_id, created_at}'
);

select is(
    api.group_members(test_support.id('group')),
    jsonb_build_array(jsonb_build_object(
        'user_id', '00000000-0000-4000-8000-000000000001', 'display_name', 'owner',
        'role', 'owner', 'joined_at', now())),
    'owner: the creator is the group''s only member, with role owner'
);

select throws_ok($$select api.create_group('')$$, '22023', null,
    'owner: an empty group name is refused with 22023');

select throws_ok($$select api.create_group('    ')$$, '22023', null,
    'owner: a blank group name is refused with 22023');

select throws_ok(format('select api.create_group(%L)', repeat('x', 101)), '22023', null,
    'owner: a group name over 100 characters is refused with 22023');

insert into vars values ('invite_open', api.create_group_invite(test_support.id('group')));

select ok(
    pg_temp.code('invite_open') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
    'owner: create_group_invite returns a code that is a UUID string'
);

select is(
    test_support.v('invite_open') - 'id' - 'code',
    jsonb_build_object('group_id', test_support.id('group'), 'created_at', now(),
                       'expires_at', null, 'max_uses', null),
    'owner: an invite without limits has expires_at and max_uses null'
);

insert into vars values
    ('invite_limited', api.create_group_invite(test_support.id('group'), 3600, 5)),
    ('invite_single', api.create_group_invite(test_support.id('group'), max_uses => 1)),
    ('invite_expiring', api.create_group_invite(test_support.id('group'), expires_in => 60)),
    ('invite_to_revoke', api.create_group_invite(test_support.id('group'))),
    ('invite_by_id', api.create_group_invite(test_support.id('group')));

select is(
    test_support.v('invite_limited') - 'id' - 'code',
    jsonb_build_object('group_id', test_support.id('group'), 'created_at', now(),
                       'expires_at', now() + interval '3600 seconds', 'max_uses', 5),
    'owner: expires_in 3600 sets expires_at an hour ahead; max_uses is kept'
);

select is(
    pg_temp.refusal(format('api.create_group_invite(%L, expires_in => 0)', test_support.id('group')))
        - 'details',
    '{"status": "400", "code": "PT400"}'::jsonb,
    'owner: expires_in 0 is refused with 400'
);

select is(
    pg_temp.refusal(format('api.create_group_invite(%L, expires_in => -5)', test_support.id('group')))
        - 'details',
    '{"status": "400", "code": "PT400"}'::jsonb,
    'owner: expires_in -5 is refused with 400'
);

select is(
    pg_temp.refusal(format('api.create_group_invite(%L, max_uses => 0)', test_support.id('group')))
        - 'details',
    '{"status": "400", "code": "PT400"}'::jsonb,
    'owner: max_uses 0 is refused with 400'
);

select is(
    pg_temp.refusal(format('api.create_group_invite(%L)', gen_random_uuid())) - 'details',
    '{"status": "404", "code": "PT404"}'::jsonb,
    'owner: an invite for a group that does not exist is refused with 404'
);

reset role;

select is_empty(
    $$select i.id from app.group_invites i, vars v
      where v.value ? 'code' and to_jsonb(i)::text ilike '%' || (v.value ->> 'code') || '%'$$,
    'no column of app.group_invites holds an invite code in plain text'
);

select is(
    (select count(*) from app.group_invites i
     where i.group_id = test_support.id('group')
       and i.code_hash = sha256(convert_to(pg_temp.code('invite_open'), 'UTF8'))),
    1::bigint,
    'app.group_invites keeps the SHA-256 of the code'
);

-- The member of this group: added directly, the join flow is tested below.
insert into app.group_members (group_id, user_id, role)
values (test_support.id('group'), '00000000-0000-4000-8000-000000000002', 'member');
-- A direct write keeps the count as the api functions do.
update app.groups set member_count = member_count + 1 where id = test_support.id('group');

-- ---------------------------------------------------------------------------
-- Member
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

insert into vars values
    ('invite_by_member', api.create_group_invite(test_support.id('group'))),
    ('invite_by_member_for_owner', api.create_group_invite(test_support.id('group')));

select is(
    test_support.v('invite_by_member') - 'id' - 'code',
    jsonb_build_object('group_id', test_support.id('group'), 'created_at', now(),
                       'expires_at', null, 'max_uses', null),
    'member: a plain member can create an invite code'
);

select ok(
    pg_temp.code('invite_by_member') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
    'member: the code returned to a member is a UUID string'
);

-- ---------------------------------------------------------------------------
-- Stranger: signed in, not a member (until joining)
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000003');

select is(
    pg_temp.refusal(format('api.create_group_invite(%L)', test_support.id('group'))),
    '{"status": "403", "code": "42501", "details": "forbidden"}'::jsonb,
    'stranger: create_group_invite is refused with 403 (status set, nothing raised)'
);

select throws_ok(format('select api.group_members(%L)', test_support.id('group')), '42501', null,
    'stranger: group_members of a group they are not in raises 42501');

select throws_ok(format('select api.group_members(%L)', gen_random_uuid()), 'PT404', null,
    'stranger: group_members of a group that does not exist raises PT404');

select throws_ok(format('select api.list_group_invites(%L)', test_support.id('group')), '42501', null,
    'stranger: list_group_invites of a group they are not in raises 42501');

select throws_ok(format('select api.leave_group(%L)', test_support.id('group')), '42501', null,
    'stranger: leave_group of a group they are not in raises 42501');

select is(
    test_support.attempt(format('api.preview_group_invite(%L)', pg_temp.code('invite_limited'))) - 'headers',
    jsonb_build_object('status', null, 'body', jsonb_build_object(
        'group', jsonb_build_object('id', test_support.id('group'), 'name', 'Book club', 'member_count', 2),
        'expires_at', now() + interval '3600 seconds',
        'uses_left', 5)),
    'stranger: preview_group_invite answers {group: {id, name, member_count}, expires_at, uses_left}'
);

select is(
    test_support.attempt(format('api.preview_group_invite(%L)', pg_temp.code('invite_open'))) -> 'body'
        -> 'uses_left',
    'null'::jsonb,
    'stranger: uses_left is null for an invite without max_uses'
);

select is(
    pg_temp.refusal(format('api.preview_group_invite(%L)', gen_random_uuid())),
    '{"status": "404", "code": "PT404", "details": "not_found"}'::jsonb,
    'stranger: previewing an unknown code answers 404 not_found'
);

insert into vars
select 'join', test_support.attempt(format('api.join_group(%L)', pg_temp.code('invite_open'))) - 'headers';

select is(
    test_support.v('join'),
    jsonb_build_object('status', null, 'body', jsonb_build_object(
        'group', jsonb_build_object('id', test_support.id('group'), 'name', 'Book club'),
        'membership', jsonb_build_object(
            'user_id', '00000000-0000-4000-8000-000000000003', 'group_id', test_support.id('group'),
            'role', 'member', 'joined_at', now()))),
    'stranger: a valid code joins; the answer is {group: {id, name}, membership: {user_id, group_id, role, joined_at}}'
);

select is(
    test_support.attempt(format('api.join_group(%L)', pg_temp.code('invite_open'))) - 'headers',
    test_support.v('join'),
    'stranger: joining again answers the same membership'
);

reset role;

select results_eq(
    format($$select role, invite_id from app.group_members
             where group_id = %L and user_id = '00000000-0000-4000-8000-000000000003'$$,
           test_support.id('group')),
    format($$values ('member'::text, %L::uuid)$$, test_support.id('invite_open')),
    'the join created one membership row with role member, linked to the invite'
);

select is(
    (select use_count from app.group_invites where id = test_support.id('invite_open')),
    1,
    'the first join used the invite once; joining again consumed no use'
);

select results_eq(
    $$select outcome, status, subject_id from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000003' and action = 'group.join'
      order by id$$,
    format($$values ('joined'::text, 200, %1$L::uuid), ('already_member', 200, %1$L::uuid)$$,
           test_support.id('invite_open')),
    'both join attempts are in the audit log'
);

-- ---------------------------------------------------------------------------
-- Joiner: codes are not case-sensitive; joining through a second code of a
-- group one is already in uses nothing
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000004');

select is(
    (select jsonb_build_object('status', a -> 'status',
                               'group_id', a #> '{body,group,id}',
                               'user_id', a #> '{body,membership,user_id}')
     from test_support.attempt(format('api.join_group(%L)', upper(pg_temp.code('invite_limited')))) a),
    jsonb_build_object('status', null, 'group_id', test_support.id('group'),
                       'user_id', '00000000-0000-4000-8000-000000000004'),
    'joiner: an upper-case code joins the group'
);

select is(
    test_support.attempt(format('api.join_group(%L)', pg_temp.code('invite_single'))) -> 'status',
    'null'::jsonb,
    'joiner: a member joining through another code of the group is answered without error'
);

-- ---------------------------------------------------------------------------
-- Latecomer: refused codes
-- ---------------------------------------------------------------------------

reset role;
-- The joiner was already in the group, so the single-use code is still unused:
-- use it up with a fresh account, then expire the expiring code.
insert into auth.users (id, email) values ('00000000-0000-4000-8000-000000000008', 'first@example.com');
set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000008');

select is(
    test_support.attempt(format('api.join_group(%L)', pg_temp.code('invite_single')))
        #> '{body,membership,user_id}',
    '"00000000-0000-4000-8000-000000000008"'::jsonb,
    'first holder: a single-use code joins its first holder'
);

reset role;
update app.group_invites set expires_at = now() - interval '1 second'
where id = test_support.id('invite_expiring');

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000005');

select is(
    test_support.attempt(format('api.preview_group_invite(%L)', pg_temp.code('invite_limited'))) - 'headers',
    jsonb_build_object('status', null, 'body', jsonb_build_object(
        'group', jsonb_build_object('id', test_support.id('group'), 'name', 'Book club', 'member_count', 5),
        'expires_at', now() + interval '3600 seconds',
        'uses_left', 4)),
    'latecomer: once the joiner used it, the preview shows one use less and one member more'
);

select is(
    pg_temp.refusal($$api.join_group('not-a-code')$$),
    '{"status": "400", "code": "PT400", "details": "malformed"}'::jsonb,
    'latecomer: a malformed code is refused with 400 malformed'
);

select is(
    pg_temp.refusal(format('api.join_group(%L)', gen_random_uuid())),
    '{"status": "404", "code": "PT404", "details": "not_found"}'::jsonb,
    'latecomer: an unknown well-formed code is refused with 404 not_found'
);

select is(
    pg_temp.refusal(format('api.join_group(%L)', pg_temp.code('invite_expiring'))),
    '{"status": "410", "code": "PT410", "details": "expired"}'::jsonb,
    'latecomer: an expired code is refused with 410 expired'
);

select is(
    pg_temp.refusal(format('api.join_group(%L)', pg_temp.code('invite_single'))),
    '{"status": "410", "code": "PT410", "details": "used_up"}'::jsonb,
    'latecomer: a used-up code is refused with 410 used_up'
);

select is(
    pg_temp.refusal(format('api.preview_group_invite(%L)', pg_temp.code('invite_expiring'))),
    '{"status": "410", "code": "PT410", "details": "expired"}'::jsonb,
    'latecomer: previewing an expired code answers 410 expired'
);

reset role;

select is(
    (select count(*) from app.group_members
     where user_id = '00000000-0000-4000-8000-000000000005'),
    0::bigint,
    'latecomer: the refused attempts created no membership'
);

select results_eq(
    format($$select use_count, max_uses from app.group_invites where id = %L$$,
           test_support.id('invite_single')),
    $$values (1, 1)$$,
    'the used-up code was used exactly once'
);

-- ---------------------------------------------------------------------------
-- Member: listing invites
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

insert into vars values ('list_before', api.list_group_invites(test_support.id('group')));

select is(
    jsonb_array_length(test_support.v('list_before')),
    8,
    'member: list_group_invites lists the group''s eight invites'
);

select is(
    (select jsonb_build_object('code_hint', e -> 'code_hint', 'use_count', e -> 'use_count',
                               'revoked_at', e -> 'revoked_at', 'active', e -> 'active')
     from jsonb_array_elements(test_support.v('list_before')) e
     where e ->> 'id' = test_support.id('invite_open')::text),
    jsonb_build_object('code_hint', right(pg_temp.code('invite_open'), 4), 'use_count', 1,
                       'revoked_at', null, 'active', true),
    'member: an invite is listed with code_hint (last four characters), use_count and active'
);

select is(
    (select jsonb_build_object('use_count', e -> 'use_count', 'active', e -> 'active')
     from jsonb_array_elements(test_support.v('list_before')) e
     where e ->> 'id' = test_support.id('invite_single')::text),
    '{"use_count": 1, "active": false}'::jsonb,
    'member: a used-up invite is listed as not active'
);

select is(
    (select jsonb_build_object('active', e -> 'active')
     from jsonb_array_elements(test_support.v('list_before')) e
     where e ->> 'id' = test_support.id('invite_expiring')::text),
    '{"active": false}'::jsonb,
    'member: an expired invite is listed as not active'
);

select is_empty(
    $$select v.name from vars v
      where v.value ? 'code' and test_support.v('list_before')::text ilike '%' || (v.value ->> 'code') || '%'$$,
    'member: the listing never shows a whole code'
);

-- ---------------------------------------------------------------------------
-- Revoking
-- ---------------------------------------------------------------------------

select is(test_support.attempt(format('api.revoke_group_invite(%L)', pg_temp.code('invite_open'))),
    jsonb_build_object('status', '404', 'headers', null, 'body', jsonb_build_object(
        'code', 'PT404', 'message', 'No invite with this code.', 'details', 'not_found', 'hint', null)),
    'member: revoking an invite someone else created answers 404, as for an unknown code');

select lives_ok(format('select api.revoke_group_invite(%L)', pg_temp.code('invite_by_member')),
    'member: the invite''s creator can revoke it');

insert into vars values ('list_after', api.list_group_invites(test_support.id('group')));

select is(
    (select jsonb_build_object('revoked', e ->> 'revoked_at' is not null, 'active', e -> 'active')
     from jsonb_array_elements(test_support.v('list_after')) e
     where e ->> 'id' = test_support.id('invite_by_member')::text),
    '{"revoked": true, "active": false}'::jsonb,
    'member: a revoked invite is listed with revoked_at and active false'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000006');

select is(test_support.attempt(format('api.revoke_group_invite(%L)', pg_temp.code('invite_open'))),
    test_support.attempt(format('api.revoke_group_invite(%L)', gen_random_uuid())),
    'outsider: revoking an invite of a group they are not in answers exactly as an unknown code');

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select lives_ok(format('select api.revoke_group_invite(%L)', pg_temp.code('invite_by_member_for_owner')),
    'owner: the group''s owner can revoke a member''s invite');

select lives_ok(format('select api.revoke_group_invite(%L)', test_support.id('invite_by_id')),
    'owner: an invite can be revoked by its id');

select lives_ok(format('select api.revoke_group_invite(%L)', upper(pg_temp.code('invite_to_revoke'))),
    'owner: an invite can be revoked by its code in upper case');

select is(test_support.sc(test_support.attempt(format('api.revoke_group_invite(%L)', gen_random_uuid()))),
    '404 PT404', 'owner: revoking an unknown code answers 404');

select is(test_support.sc(test_support.attempt($$api.revoke_group_invite('not-a-code')$$)),
    '400 PT400', 'owner: revoking a malformed code answers 400');

reset role;

select results_eq(
    $$select v.name, i.revoked_at is not null
      from vars v join app.group_invites i on i.id = (v.value ->> 'id')::uuid
      where v.value ? 'code'
      order by v.name$$,
    $$values ('invite_by_id', true), ('invite_by_member', true),
             ('invite_by_member_for_owner', true), ('invite_expiring', false),
             ('invite_limited', false), ('invite_open', false), ('invite_single', false),
             ('invite_to_revoke', true)$$,
    'exactly the invites revoked above are revoked'
);

update app.group_invites set revoked_at = now() - interval '1 hour'
where id = test_support.id('invite_by_id');

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select lives_ok(format('select api.revoke_group_invite(%L)', pg_temp.code('invite_by_id')),
    'owner: revoking an invite twice is fine');

reset role;

select is(
    (select revoked_at from app.group_invites where id = test_support.id('invite_by_id')),
    now() - interval '1 hour',
    'revoking twice keeps the first revoked_at'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000005');

select is(
    (select jsonb_build_object('status', a -> 'status', 'body', a -> 'body')
     from test_support.attempt(format('api.join_group(%L)', pg_temp.code('invite_to_revoke'))) a),
    '{"status": "410", "body": {"code": "PT410", "message": "This invite code has been revoked.",
                                "details": "revoked", "hint": null}}'::jsonb,
    'latecomer: a revoked code is refused with 410 revoked (the whole body)'
);

select is(
    pg_temp.refusal(format('api.preview_group_invite(%L)', pg_temp.code('invite_to_revoke'))),
    '{"status": "410", "code": "PT410", "details": "revoked"}'::jsonb,
    'latecomer: previewing a revoked code answers 410 revoked'
);

reset role;

select results_eq(
    $$select outcome, status from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000005' and action = 'group.join'
      order by id$$,
    $$values ('malformed'::text, 400), ('not_found', 404), ('expired', 410), ('used_up', 410),
             ('revoked', 410)$$,
    'every refused join of the latecomer is in the audit log with its reason and status'
);

select results_eq(
    $$select outcome, subject_id, details from app.audit_log
      where actor_id = '00000000-0000-4000-8000-000000000005' and action = 'group.join'
        and status = 410
      order by id$$,
    $$values ('expired'::text, test_support.id('invite_expiring'),
              jsonb_build_object('group_id', test_support.id('group'))),
             ('used_up', test_support.id('invite_single'),
              jsonb_build_object('group_id', test_support.id('group'))),
             ('revoked', test_support.id('invite_to_revoke'),
              jsonb_build_object('group_id', test_support.id('group')))$$,
    'a refused join of an expired, used-up or revoked code audits the invite and its group'
);

-- ---------------------------------------------------------------------------
-- Members and my groups
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select is(
    (select jsonb_agg(jsonb_build_object('user_id', e -> 'user_id', 'role', e -> 'role')
                      order by n)
     from jsonb_array_elements(api.group_members(test_support.id('group'))) with ordinality as m(e, n)),
    '[{"user_id": "00000000-0000-4000-8000-000000000001", "role": "owner"},
      {"user_id": "00000000-0000-4000-8000-000000000002", "role": "member"},
      {"user_id": "00000000-0000-4000-8000-000000000003", "role": "member"},
      {"user_id": "00000000-0000-4000-8000-000000000004", "role": "member"},
      {"user_id": "00000000-0000-4000-8000-000000000008", "role": "member"}]'::jsonb,
    'member: group_members lists every member with their role'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000003');

select is(
    (select jsonb_agg(jsonb_build_object('id', e -> 'id', 'name', e -> 'name', 'role', e -> 'role',
                                         'member_count', e -> 'member_count'))
     from jsonb_array_elements(api.my_groups()) e),
    jsonb_build_array(jsonb_build_object('id', test_support.id('group'), 'name', 'Book club',
                                         'role', 'member', 'member_count', 5)),
    'stranger (now a member): my_groups lists the joined group only'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000006');

insert into vars values ('outsider_group', api.create_group('Outsider club'));
insert into vars values ('outsider_invite', api.create_group_invite(test_support.id('outsider_group')));

select is(
    (select jsonb_agg(jsonb_build_object('name', e -> 'name', 'role', e -> 'role'))
     from jsonb_array_elements(api.my_groups()) e),
    '[{"name": "Outsider club", "role": "owner"}]'::jsonb,
    'outsider: my_groups lists their own group and not the others'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000005');

select is(api.my_groups(), '[]'::jsonb, 'latecomer: my_groups is empty for someone in no group');

-- ---------------------------------------------------------------------------
-- Leaving
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

insert into vars values ('handover', api.create_group('Hand-over'));

reset role;
-- The elder joined before the younger one but has the higher id, so the
-- hand-over must follow the joining order, not the ids.
update app.group_members set created_at = now() - interval '3 days'
where group_id = test_support.id('handover');
insert into app.group_members (group_id, user_id, role, created_at) values
    (test_support.id('handover'), '00000000-0000-4000-8000-000000000007', 'member', now() - interval '1 day'),
    (test_support.id('handover'), '00000000-0000-4000-8000-000000000009', 'member', now() - interval '2 days');
update app.groups set member_count = member_count + 2 where id = test_support.id('handover');

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select lives_ok(format('select api.leave_group(%L)', test_support.id('handover')),
    'owner: the owner can leave a group with other members');

reset role;

select results_eq(
    format($$select user_id, role from app.group_members where group_id = %L order by user_id$$,
           test_support.id('handover')),
    $$values ('00000000-0000-4000-8000-000000000007'::uuid, 'member'::text),
             ('00000000-0000-4000-8000-000000000009'::uuid, 'owner'::text)$$,
    'when the owner leaves, the longest-standing member becomes owner'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select lives_ok(format('select api.leave_group(%L)', test_support.id('group')),
    'member: a plain member can leave');

reset role;

select results_eq(
    format($$select user_id, role from app.group_members
             where group_id = %L and user_id in ('00000000-0000-4000-8000-000000000001',
                                                 '00000000-0000-4000-8000-000000000002')$$,
           test_support.id('group')),
    $$values ('00000000-0000-4000-8000-000000000001'::uuid, 'owner'::text)$$,
    'a plain member leaving removes only their membership; the owner stays owner'
);

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000006');

select lives_ok(format('select api.leave_group(%L)', test_support.id('outsider_group')),
    'outsider: the last member can leave');

reset role;

select results_eq(
    format($$select (select count(*) from app.groups where id = %1$L),
                    (select count(*) from app.group_invites where group_id = %1$L),
                    (select count(*) from app.group_members where group_id = %1$L)$$,
           test_support.id('outsider_group')),
    $$values (0::bigint, 0::bigint, 0::bigint)$$,
    'when the last member leaves, the group and its invites are deleted'
);

-- ---------------------------------------------------------------------------
-- Anonymous: no api function is executable
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok($$select api.create_group('Anon club')$$, '42501', null,
    'anon: create_group raises 42501');
select throws_ok($$select api.my_groups()$$, '42501', null,
    'anon: my_groups raises 42501');
select throws_ok(format('select api.group_members(%L)', test_support.id('group')), '42501', null,
    'anon: group_members raises 42501');
select throws_ok(format('select api.leave_group(%L)', test_support.id('group')), '42501', null,
    'anon: leave_group raises 42501');
select throws_ok(format('select api.create_group_invite(%L)', test_support.id('group')), '42501', null,
    'anon: create_group_invite raises 42501');
select throws_ok(format('select api.join_group(%L)', pg_temp.code('invite_limited')), '42501', null,
    'anon: join_group raises 42501');
select throws_ok(format('select api.preview_group_invite(%L)', pg_temp.code('invite_limited')),
    '42501', null,
    'anon: preview_group_invite raises 42501');
select throws_ok(format('select api.list_group_invites(%L)', test_support.id('group')), '42501', null,
    'anon: list_group_invites raises 42501');
select throws_ok(format('select api.revoke_group_invite(%L)', pg_temp.code('invite_limited')),
    '42501', null,
    'anon: revoke_group_invite raises 42501');

-- ---------------------------------------------------------------------------
-- Authenticated role without a user id in the claims
-- ---------------------------------------------------------------------------

set local role authenticated;
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);

select throws_ok($$select api.create_group('Nobody''s club')$$, 'PT401', null,
    'no sub claim: create_group raises PT401');
select throws_ok(format('select api.join_group(%L)', pg_temp.code('invite_limited')), 'PT401', null,
    'no sub claim: join_group raises PT401');
select throws_ok(format('select api.create_group_invite(%L)', test_support.id('group')), 'PT401', null,
    'no sub claim: create_group_invite raises PT401');
select throws_ok($$select api.my_groups()$$, 'PT401', null,
    'no sub claim: my_groups raises PT401');
select throws_ok(format('select api.group_members(%L)', test_support.id('group')), 'PT401', null,
    'no sub claim: group_members raises PT401');
select throws_ok(format('select api.list_group_invites(%L)', test_support.id('group')), 'PT401', null,
    'no sub claim: list_group_invites raises PT401');
select throws_ok(format('select api.leave_group(%L)', test_support.id('group')), 'PT401', null,
    'no sub claim: leave_group raises PT401');
select throws_ok(format('select api.preview_group_invite(%L)', pg_temp.code('invite_limited')),
    'PT401', null,
    'no sub claim: preview_group_invite raises PT401');
select throws_ok(format('select api.revoke_group_invite(%L)', pg_temp.code('invite_limited')),
    'PT401', null,
    'no sub claim: revoke_group_invite raises PT401');

reset role;

select is(
    (select use_count from app.group_invites where id = test_support.id('invite_limited')),
    1,
    'the refused attempts of anon and of a caller without sub consumed no use'
);

select * from finish();
rollback;
