-- Registering for events (contract section 3, "Pair registration"):
-- register_for_event and cancel_registration, the seats they count, and the
-- constraints that keep seats and registrations right whatever the code does.
-- Actors: three single registrants, a pair, and anonymous; the superuser for
-- the constraints. One transaction: now() is frozen, a passed deadline is made
-- by moving registration_deadline into the past.
begin;
select plan(29);

-- ---------------------------------------------------------------------------
-- Arrange (as the superuser)
-- ---------------------------------------------------------------------------

insert into auth.users (id, email) values
    ('b0000000-0000-4000-8000-000000000001', 'first@example.com'),
    ('b0000000-0000-4000-8000-000000000002', 'second@example.com'),
    ('b0000000-0000-4000-8000-000000000003', 'third@example.com'),
    ('b0000000-0000-4000-8000-000000000004', 'pair-one@example.com'),
    ('b0000000-0000-4000-8000-000000000005', 'pair-two@example.com'),
    ('b0000000-0000-4000-8000-000000000009', 'organizer@example.com');

insert into app.events (id, creator_id, title, registration_deadline, capacity, status) values
    ('f0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000009', 'Two Seats',   now() + interval '1 day', 2,    'open'),
    ('f0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000009', 'Closed',      null,                     null, 'closed'),
    ('f0000000-0000-4000-8000-000000000003', 'b0000000-0000-4000-8000-000000000009', 'Too Late',    now() - interval '1 second', null, 'open'),
    ('f0000000-0000-4000-8000-000000000004', 'b0000000-0000-4000-8000-000000000009', 'Pairs Open',  null,                     10,   'open');

-- Values carried from one statement to the next.
create temp table vars (name text primary key, value jsonb);
grant all on vars to authenticated;

create function pg_temp.seats(event_id uuid) returns integer
language sql stable security definer as $$ select seats_taken from app.events where id = $1 $$;

grant execute on function pg_temp.seats(uuid) to authenticated;

-- ---------------------------------------------------------------------------
-- First registrant: registers, again, cancels, again
-- ---------------------------------------------------------------------------

select test_support.sign_in('b0000000-0000-4000-8000-000000000001');
set local role authenticated;

insert into vars values ('r1', api.register_for_event('f0000000-0000-4000-8000-000000000001'));

reset role;

select is(
    test_support.v('r1'),
    (select jsonb_build_object('id', r.id, 'event_id', 'f0000000-0000-4000-8000-000000000001',
                               'user_id', 'b0000000-0000-4000-8000-000000000001', 'status', 'confirmed',
                               'pair_id', null, 'created_at', now())
     from app.registrations r
     where r.event_id = 'f0000000-0000-4000-8000-000000000001'
       and r.user_id = 'b0000000-0000-4000-8000-000000000001'),
    'first: registering answers {id, event_id, user_id, status: confirmed, pair_id: null, created_at} of the stored row'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000001'), 1,
    'first: the registration took one seat');

select test_support.sign_in('b0000000-0000-4000-8000-000000000001');
set local role authenticated;

select is(
    api.register_for_event('f0000000-0000-4000-8000-000000000001'),
    test_support.v('r1'),
    'first: registering twice returns the same registration'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000001'), 1,
    'first: registering twice takes no second seat');

select is(
    (select count(*) from app.registrations),
    1::bigint,
    'first: one registration row exists for them'
);

select throws_ok(
    $$select api.register_for_event('f0000000-0000-4000-8000-000000000002')$$,
    'PT400', null,
    'first: a closed event refuses registration (PT400)'
);

select throws_ok(
    $$select api.register_for_event('f0000000-0000-4000-8000-000000000003')$$,
    'PT400', null,
    'first: an event past its deadline refuses registration (PT400)'
);

select throws_ok(
    $$select api.register_for_event('00000000-0000-4000-8000-00000000dead')$$,
    'PT404', null,
    'first: an unknown event is PT404'
);

-- ---------------------------------------------------------------------------
-- Second and third registrants: the event fills up
-- ---------------------------------------------------------------------------

select test_support.sign_in('b0000000-0000-4000-8000-000000000002');

select is(
    api.register_for_event('f0000000-0000-4000-8000-000000000001') ->> 'status',
    'confirmed',
    'second: takes the last seat'
);

select test_support.sign_in('b0000000-0000-4000-8000-000000000003');

select throws_ok(
    $$select api.register_for_event('f0000000-0000-4000-8000-000000000001')$$,
    'PT409', null,
    'third: a full event refuses registration (PT409)'
);

select is(
    (select count(*) from app.registrations),
    0::bigint,
    'third: holds no registration after the refusal'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000001'), 2,
    'third: the refusal took no seat (two of two taken)');

-- ---------------------------------------------------------------------------
-- First registrant cancels: the seat is freed
-- ---------------------------------------------------------------------------

select test_support.sign_in('b0000000-0000-4000-8000-000000000001');

select lives_ok(
    $$select api.cancel_registration('f0000000-0000-4000-8000-000000000001')$$,
    'first: cancels'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000001'), 1,
    'first: cancelling freed the seat');

select results_eq(
    $$select id, status, cancelled_at from app.registrations$$,
    format($$values (%L::uuid, 'cancelled'::text, now())$$, test_support.v('r1') ->> 'id'),
    'first: the registration is kept, cancelled, with the time of cancelling'
);

select throws_ok(
    $$select api.cancel_registration('f0000000-0000-4000-8000-000000000001')$$,
    'PT404', null,
    'first: cancelling a second time is PT404'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000001'), 1,
    'first: the second cancel freed nothing more');

select test_support.sign_in('b0000000-0000-4000-8000-000000000003');

select is(
    api.register_for_event('f0000000-0000-4000-8000-000000000001') ->> 'user_id',
    'b0000000-0000-4000-8000-000000000003',
    'third: takes the freed seat'
);

reset role;

-- ---------------------------------------------------------------------------
-- A pair: one partner cancels, the other stays
-- ---------------------------------------------------------------------------

select test_support.sign_in('b0000000-0000-4000-8000-000000000004');
set local role authenticated;

insert into vars values ('invite', api.create_pair_invite('f0000000-0000-4000-8000-000000000004'));

select test_support.sign_in('b0000000-0000-4000-8000-000000000005');

insert into vars values ('join', api.join_pair_invite(test_support.v('invite') ->> 'short_code'));
insert into vars values ('pair', api.accept_pair_invite(test_support.v('join') ->> 'token'));

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000004'), 2,
    'pair: accepting took two seats');

select lives_ok(
    $$select api.cancel_registration('f0000000-0000-4000-8000-000000000004')$$,
    'pair: the second partner cancels'
);

reset role;

select results_eq(
    $$select user_id, status, pair_id::text from app.registrations
      where event_id = 'f0000000-0000-4000-8000-000000000004' order by user_id$$,
    format($$values ('b0000000-0000-4000-8000-000000000004'::uuid, 'confirmed'::text, %1$L::text),
                    ('b0000000-0000-4000-8000-000000000005', 'cancelled', %1$L)$$,
           test_support.v('pair') ->> 'pair_id'),
    'pair: the partner who did not cancel stays confirmed in the pair'
);

select is(pg_temp.seats('f0000000-0000-4000-8000-000000000004'), 1,
    'pair: one seat is freed, one stays taken');

-- ---------------------------------------------------------------------------
-- Anonymous
-- ---------------------------------------------------------------------------

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);

select throws_ok(
    $$select api.register_for_event('f0000000-0000-4000-8000-000000000004')$$,
    '42501', null,
    'anon: register_for_event is refused (42501)'
);

select throws_ok(
    $$select api.cancel_registration('f0000000-0000-4000-8000-000000000004')$$,
    '42501', null,
    'anon: cancel_registration is refused (42501)'
);

reset role;

-- ---------------------------------------------------------------------------
-- Superuser: the constraints hold whatever the code does
-- ---------------------------------------------------------------------------

select throws_ok(
    $$update app.events set seats_taken = capacity + 1 where id = 'f0000000-0000-4000-8000-000000000001'$$,
    '23514', null,
    'superuser: seats_taken above capacity violates a check constraint (23514)'
);

select throws_ok(
    $$update app.events set seats_taken = -1 where id = 'f0000000-0000-4000-8000-000000000004'$$,
    '23514', null,
    'superuser: negative seats_taken violates the check constraint (23514)'
);

select throws_ok(
    $$insert into app.registrations (event_id, user_id)
      values ('f0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002')$$,
    '23505', null,
    'superuser: a second confirmed registration of one user for one event is refused (23505)'
);

select lives_ok(
    $$insert into app.registrations (event_id, user_id, status, cancelled_at)
      values ('f0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000002', 'cancelled', now())$$,
    'superuser: a cancelled registration beside a confirmed one is allowed (the unique index is partial)'
);

select results_eq(
    $$select user_id, status, count(*) from app.registrations
      where event_id = 'f0000000-0000-4000-8000-000000000001'
      group by user_id, status order by user_id, status$$,
    $$values ('b0000000-0000-4000-8000-000000000001'::uuid, 'cancelled'::text, 1::bigint),
             ('b0000000-0000-4000-8000-000000000002', 'cancelled', 1),
             ('b0000000-0000-4000-8000-000000000002', 'confirmed', 1),
             ('b0000000-0000-4000-8000-000000000003', 'confirmed', 1)$$,
    'superuser: Two Seats holds two confirmed registrations and the cancelled ones'
);

select * from finish();
rollback;
