-- Row-level security and table privileges: what signed-in users can read and
-- write directly in schema app, whatever the api functions do. Actors: a
-- stranger (signed in, in no group), a member and an owner of one group each,
-- and anonymous.
begin;
select plan(47);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

insert into auth.users (id, email) values
    ('00000000-0000-4000-8000-000000000001', 'owner-a@example.com'),
    ('00000000-0000-4000-8000-000000000002', 'member-a@example.com'),
    ('00000000-0000-4000-8000-000000000003', 'stranger@example.com'),
    ('00000000-0000-4000-8000-000000000004', 'owner-b@example.com');

insert into app.groups (id, name, creator_id) values
    ('10000000-0000-4000-8000-00000000000a', 'Group A', '00000000-0000-4000-8000-000000000001'),
    ('10000000-0000-4000-8000-00000000000b', 'Group B', '00000000-0000-4000-8000-000000000004');

insert into app.group_members (group_id, user_id, role) values
    ('10000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000001', 'owner'),
    ('10000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000002', 'member'),
    ('10000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-000000000004', 'owner');

insert into app.group_invites (id, group_id, created_by, code_hash, code_hint) values
    ('20000000-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-00000000000a',
     '00000000-0000-4000-8000-000000000001', sha256('invite of group a'), 'aaaa'),
    ('20000000-0000-4000-8000-00000000000b', '10000000-0000-4000-8000-00000000000b',
     '00000000-0000-4000-8000-000000000004', sha256('invite of group b'), 'bbbb');

insert into app.audit_log (actor_id, action, outcome, status) values
    ('00000000-0000-4000-8000-000000000001', 'test.rls', 'owner a one', 200),
    ('00000000-0000-4000-8000-000000000001', 'test.rls', 'owner a two', 200),
    ('00000000-0000-4000-8000-000000000003', 'test.rls', 'stranger one', 404),
    ('00000000-0000-4000-8000-000000000004', 'test.rls', 'owner b one', 200);

insert into app.rate_limit_counters (user_id, bucket, window_start, hits) values
    ('00000000-0000-4000-8000-000000000001', 'join_code', now(), 1),
    ('00000000-0000-4000-8000-000000000001', 'create_invite', now(), 1),
    ('00000000-0000-4000-8000-000000000003', 'join_code', now(), 1);

select results_eq(
    $$select (select count(*) from app.groups where name in ('Group A', 'Group B')),
             (select count(*) from app.group_members
              where group_id in ('10000000-0000-4000-8000-00000000000a',
                                 '10000000-0000-4000-8000-00000000000b')),
             (select count(*) from app.group_invites
              where group_id in ('10000000-0000-4000-8000-00000000000a',
                                 '10000000-0000-4000-8000-00000000000b'))$$,
    $$values (2::bigint, 3::bigint, 2::bigint)$$,
    'superuser: the two groups, three memberships and two invites exist'
);

-- ---------------------------------------------------------------------------
-- Stranger: signed in, in no group
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000003');

select is((select count(*) from app.groups), 0::bigint,
    'stranger: sees no group');
select is((select count(*) from app.group_members), 0::bigint,
    'stranger: sees no membership');
select is((select count(*) from app.group_invites), 0::bigint,
    'stranger: sees no invite');

select results_eq(
    $$select actor_id, outcome from app.audit_log order by id$$,
    $$values ('00000000-0000-4000-8000-000000000003'::uuid, 'stranger one'::text)$$,
    'stranger: sees only their own audit entries'
);

select results_eq(
    $$select user_id, bucket from app.rate_limit_counters order by bucket$$,
    $$values ('00000000-0000-4000-8000-000000000003'::uuid, 'join_code'::text)$$,
    'stranger: sees only their own rate limit counters'
);

select results_eq(
    $$select id, display_name from app.profiles$$,
    $$values ('00000000-0000-4000-8000-000000000003'::uuid, 'stranger'::text)$$,
    'stranger: sees only their own profile'
);

select results_eq(
    $$select max_attempts, window_seconds from app.rate_limits where bucket = 'join_code'$$,
    $$values (10, 60)$$,
    'stranger: can read the rate limits'
);

-- ---------------------------------------------------------------------------
-- Member of group A
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000002');

select results_eq(
    $$select id, name from app.groups$$,
    $$values ('10000000-0000-4000-8000-00000000000a'::uuid, 'Group A'::text)$$,
    'member: sees their group and not the other'
);

select results_eq(
    $$select group_id, user_id, role from app.group_members order by user_id$$,
    $$values ('10000000-0000-4000-8000-00000000000a'::uuid, '00000000-0000-4000-8000-000000000001'::uuid, 'owner'::text),
             ('10000000-0000-4000-8000-00000000000a'::uuid, '00000000-0000-4000-8000-000000000002'::uuid, 'member'::text)$$,
    'member: sees the memberships of their group only'
);

select results_eq(
    $$select id from app.group_invites$$,
    $$values ('20000000-0000-4000-8000-00000000000a'::uuid)$$,
    'member: sees the invites of their group only'
);

select is_empty($$select id from app.audit_log$$,
    'member: sees no audit entry of other users');

select is_empty($$select user_id from app.rate_limit_counters$$,
    'member: sees no rate limit counter of other users');

-- Direct writes: none, whatever the policies. The api functions do the writing.
select throws_ok(
    $$insert into app.groups (name, creator_id) values ('Sneaky', '00000000-0000-4000-8000-000000000002')$$,
    '42501', null, 'member: cannot insert into app.groups');
select throws_ok(
    $$update app.groups set name = 'Renamed' where id = '10000000-0000-4000-8000-00000000000a'$$,
    '42501', null, 'member: cannot update app.groups');
select throws_ok(
    $$delete from app.groups where id = '10000000-0000-4000-8000-00000000000a'$$,
    '42501', null, 'member: cannot delete from app.groups');

select throws_ok(
    $$insert into app.group_members (group_id, user_id, role)
      values ('10000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-000000000002', 'owner')$$,
    '42501', null, 'member: cannot insert into app.group_members');
select throws_ok(
    $$update app.group_members set role = 'owner'
      where user_id = '00000000-0000-4000-8000-000000000002'$$,
    '42501', null, 'member: cannot update app.group_members (no self-promotion)');
select throws_ok(
    $$delete from app.group_members where group_id = '10000000-0000-4000-8000-00000000000a'$$,
    '42501', null, 'member: cannot delete from app.group_members');

select throws_ok(
    $$insert into app.group_invites (group_id, created_by, code_hash, code_hint)
      values ('10000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-000000000002',
              sha256('sneaky'), 'eaky')$$,
    '42501', null, 'member: cannot insert into app.group_invites');
select throws_ok(
    $$update app.group_invites set use_count = 0, max_uses = null$$,
    '42501', null, 'member: cannot update app.group_invites');
select throws_ok(
    $$delete from app.group_invites$$,
    '42501', null, 'member: cannot delete from app.group_invites');

select throws_ok(
    $$insert into app.audit_log (actor_id, action, outcome, status)
      values ('00000000-0000-4000-8000-000000000002', 'forged', 'forged', 200)$$,
    '42501', null, 'member: cannot insert into app.audit_log');
select throws_ok(
    $$update app.audit_log set outcome = 'rewritten'$$,
    '42501', null, 'member: cannot update app.audit_log');
select throws_ok(
    $$delete from app.audit_log$$,
    '42501', null, 'member: cannot delete from app.audit_log');

select throws_ok(
    $$update app.rate_limits set max_attempts = 1000000$$,
    '42501', null, 'member: cannot raise the rate limits');
select throws_ok(
    $$delete from app.rate_limit_counters$$,
    '42501', null, 'member: cannot delete rate limit counters');
select throws_ok(
    $$update app.profiles set display_name = 'Renamed'$$,
    '42501', null, 'member: cannot update app.profiles directly');

-- ---------------------------------------------------------------------------
-- Owner of group A
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000001');

select results_eq(
    $$select id from app.groups$$,
    $$values ('10000000-0000-4000-8000-00000000000a'::uuid)$$,
    'owner a: sees their group and not the other');

select results_eq(
    $$select outcome from app.audit_log order by id$$,
    $$values ('owner a one'::text), ('owner a two'::text)$$,
    'owner a: sees exactly their own two audit entries');

select results_eq(
    $$select bucket from app.rate_limit_counters order by bucket$$,
    $$values ('create_invite'::text), ('join_code'::text)$$,
    'owner a: sees exactly their own two rate limit counters');

-- ---------------------------------------------------------------------------
-- Owner of group B
-- ---------------------------------------------------------------------------

set local role authenticated;
select test_support.sign_in('00000000-0000-4000-8000-000000000004');

select results_eq(
    $$select id from app.groups$$,
    $$values ('10000000-0000-4000-8000-00000000000b'::uuid)$$,
    'owner b: sees group B and not group A');

select results_eq(
    $$select group_id, user_id from app.group_members$$,
    $$values ('10000000-0000-4000-8000-00000000000b'::uuid, '00000000-0000-4000-8000-000000000004'::uuid)$$,
    'owner b: sees the memberships of group B only');

select results_eq(
    $$select id from app.group_invites$$,
    $$values ('20000000-0000-4000-8000-00000000000b'::uuid)$$,
    'owner b: sees the invites of group B only');

select results_eq(
    $$select outcome from app.audit_log$$,
    $$values ('owner b one'::text)$$,
    'owner b: sees only their own audit entry');

select throws_ok(
    $$update app.groups set name = 'Taken over' where id = '10000000-0000-4000-8000-00000000000b'$$,
    '42501', null, 'owner b: cannot update even their own group directly');

-- ---------------------------------------------------------------------------
-- Authenticated role without a user id in the claims
-- ---------------------------------------------------------------------------

set local role authenticated;
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);

select is((select count(*) from app.groups), 0::bigint,
    'no sub claim: sees no group');
select is((select count(*) from app.group_members), 0::bigint,
    'no sub claim: sees no membership');
select is((select count(*) from app.audit_log), 0::bigint,
    'no sub claim: sees no audit entry');

-- ---------------------------------------------------------------------------
-- Anonymous: schema app is closed
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok($$select count(*) from app.groups$$, '42501', 'permission denied for schema app',
    'anon: selecting app.groups raises 42501');
select throws_ok($$select count(*) from app.group_members$$, '42501', 'permission denied for schema app',
    'anon: selecting app.group_members raises 42501');
select throws_ok($$select count(*) from app.group_invites$$, '42501', 'permission denied for schema app',
    'anon: selecting app.group_invites raises 42501');
select throws_ok($$select count(*) from app.audit_log$$, '42501', 'permission denied for schema app',
    'anon: selecting app.audit_log raises 42501');
select throws_ok($$select count(*) from app.profiles$$, '42501', 'permission denied for schema app',
    'anon: selecting app.profiles raises 42501');
select throws_ok($$select count(*) from app.rate_limit_counters$$, '42501', 'permission denied for schema app',
    'anon: selecting app.rate_limit_counters raises 42501');
select throws_ok(
    $$insert into app.groups (name, creator_id) values ('Anon', '00000000-0000-4000-8000-000000000001')$$,
    '42501', 'permission denied for schema app',
    'anon: inserting into app.groups raises 42501');

reset role;

select results_eq(
    $$select (select name from app.groups where id = '10000000-0000-4000-8000-00000000000a'),
             (select count(*) from app.group_members
              where group_id = '10000000-0000-4000-8000-00000000000a' and role = 'owner'),
             (select count(*) from app.audit_log where action = 'test.rls')$$,
    $$values ('Group A'::text, 1::bigint, 4::bigint)$$,
    'superuser: after all refused writes, the rows are unchanged'
);

select * from finish();
rollback;
