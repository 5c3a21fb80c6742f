-- Address aliases (issue 18): the stop list and the per-recipient mail limit
-- ('invite_mail', 3 a day) compare addresses in one canonical form
-- (app.canonical_email): lower case, `+tag` removed, and for gmail.com and
-- googlemail.com the dots of the local part removed (googlemail.com as
-- gmail.com). Actors: the recipient following a stop link (anon), inviters
-- (authenticated), the queue (private.queue_invite_mail, which every emailed
-- invite goes through).
begin;
select plan(22);

delete from app.mail_outbox;
create temp table vars (name text primary key, value jsonb);
grant all on vars to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- The canonical form
-- ---------------------------------------------------------------------------

select is(app.canonical_email(' Victim+1@Example.ORG '), 'victim@example.org',
    'case, spaces and a +tag go');
select is(app.canonical_email('victim+a+b@example.org'), 'victim@example.org',
    'everything from the first + goes');
select is(app.canonical_email('v.ictim@gmail.com'), 'victim@gmail.com',
    'gmail.com ignores dots');
select is(app.canonical_email('V.Ictim+x@GoogleMail.com'), 'victim@gmail.com',
    'googlemail.com is gmail.com');
select is(app.canonical_email('v.ictim@example.org'), 'v.ictim@example.org',
    'other domains keep their dots');
select is(app.canonical_email('v.ictim@mail.gmail.com.example'), 'v.ictim@mail.gmail.com.example',
    'only gmail.com and googlemail.com themselves');
select is(app.canonical_email('a@b@gmail.com'), 'a@b@gmail.com',
    'the domain is after the last @');
select is(app.canonical_email(null), null, 'null stays null');

-- ---------------------------------------------------------------------------
-- A stop holds across aliases
-- ---------------------------------------------------------------------------

-- Messages already queued for aliases of the address, stored as they were given
-- (as older releases stored them), and one for another mailbox.
insert into app.mail_outbox (id, to_email, template, data) values
    ('c5200000-0000-4000-8000-000000000001', 'v.ictim+old@googlemail.com', 'pair_invite', '{}'),
    ('c5200000-0000-4000-8000-000000000002', 'victim@gmail.com', 'pair_invite', '{}'),
    ('c5200000-0000-4000-8000-000000000003', 'victim2@gmail.com', 'pair_invite', '{}');
insert into vars values ('token', to_jsonb(private.mail_stop_token('Victim+news@gmail.com')));

set local role anon;
select set_config('request.jwt.claims', '{"role":"anon"}', true);
select is(api.stop_invitations(test_support.v('token') #>> '{}'), '{"stopped": true}'::jsonb,
    'anon: the link sent to victim+news@gmail.com stops');
reset role;

select results_eq($$select email from app.mail_stops where email like '%victim%'$$,
    $$values ('victim@gmail.com'::text)$$,
    'the stop list holds the canonical form');
select results_eq(
    $$select id, cancelled_at is not null from app.mail_outbox order by id$$,
    $$values ('c5200000-0000-4000-8000-000000000001'::uuid, true),
             ('c5200000-0000-4000-8000-000000000002'::uuid, true),
             ('c5200000-0000-4000-8000-000000000003'::uuid, false)$$,
    'queued messages to every alias are cancelled; another mailbox''s stay');
select results_eq(
    $$select a, private.queue_invite_mail(a, 'pair_invite', '{}')
      from unnest(array['v.ictim@gmail.com', 'victim+1@gmail.com', 'VICTIM@googlemail.com',
                        'vic.tim+2@GMAIL.COM', 'victim2@gmail.com']) a$$,
    $$values ('v.ictim@gmail.com', false), ('victim+1@gmail.com', false),
             ('VICTIM@googlemail.com', false), ('vic.tim+2@GMAIL.COM', false),
             ('victim2@gmail.com', true)$$,
    'no message is queued for an alias of the stopped address; another mailbox gets one');

-- A stop made before the rules (a row stored as given) is found by its canonical
-- form: the migration brought stored stops to theirs.
select throws_ok($$insert into app.mail_stops (email) values ('v.ictim+x@gmail.com')$$,
    '23514', null, 'the stop list refuses a form that is not canonical');

-- ---------------------------------------------------------------------------
-- The per-recipient limit holds across aliases
-- ---------------------------------------------------------------------------

select results_eq(
    $$select a, private.queue_invite_mail(a, 'pair_invite', '{}')
      from unnest(array['carol@example.org', 'Carol+a@example.org', 'carol+b@example.org',
                        'carol+c@example.org', 'CAROL@example.org']) with ordinality u(a, n)
      order by n$$,
    $$values ('carol@example.org', true), ('Carol+a@example.org', true),
             ('carol+b@example.org', true), ('carol+c@example.org', false),
             ('CAROL@example.org', false)$$,
    'three messages a day to an address and its +tags together');
select is(private.queue_invite_mail('c.arol@example.org', 'pair_invite', '{}'), true,
    'a dot elsewhere than Gmail is another mailbox');
select results_eq(
    $$select a, private.queue_invite_mail(a, 'pair_invite', '{}')
      from unnest(array['dave@gmail.com', 'd.ave@gmail.com', 'dave+x@googlemail.com',
                        'D.A.V.E@gmail.com']) with ordinality u(a, n)
      order by n$$,
    $$values ('dave@gmail.com', true), ('d.ave@gmail.com', true),
             ('dave+x@googlemail.com', true), ('D.A.V.E@gmail.com', false)$$,
    'Gmail''s dotted and googlemail.com forms count together');
select results_eq(
    $$select to_email from app.mail_outbox where to_email ilike '%ave%' order by created_at, to_email$$,
    $$values ('d.ave@gmail.com'::text), ('dave+x@googlemail.com'::text), ('dave@gmail.com'::text)$$,
    'messages are addressed as given (lower-cased), never to the canonical form');

-- Messages stored as given before the rules count too.
insert into app.mail_outbox (to_email, template, data) values
    ('erin+1@example.org', 'pair_invite', '{}'), ('erin+2@example.org', 'pair_invite', '{}'),
    ('erin@example.org', 'pair_invite', '{}');
select is(private.queue_invite_mail('Erin+3@Example.org', 'pair_invite', '{}'), false,
    'messages already stored to aliases count');

-- Through the API: an inviter's emailed invite to an alias of the stopped address.
insert into auth.users (id, email) values
    ('c5000000-0000-4000-8000-000000000001', 'alias-inviter@example.com'),
    ('c5000000-0000-4000-8000-000000000009', 'alias-organizer@example.com');
insert into app.events (id, creator_id, title) values
    ('c5100000-0000-4000-8000-000000000001', 'c5000000-0000-4000-8000-000000000009', 'Alias Cup');
set local role authenticated;
select test_support.sign_in('c5000000-0000-4000-8000-000000000001');
insert into vars values ('invite', test_support.attempt(
    $$api.create_pair_invite('c5100000-0000-4000-8000-000000000001', 'V.Ictim+cup@gmail.com')$$));
reset role;
select is(test_support.v('invite') -> 'status', 'null'::jsonb,
    'inviter: the invite to an alias of a stopped address is created');
select results_eq(
    $$select invitee_email from app.pair_invites
      where id = (test_support.v('invite') #>> '{body,id}')::uuid$$,
    $$values ('v.ictim+cup@gmail.com'::text)$$,
    'the invite keeps the address as given');
select is_empty($$select from app.mail_outbox where to_email = 'v.ictim+cup@gmail.com'$$,
    'and no message is queued for it');

-- The index serves the comparison.
select ok(exists (select from pg_indexes where schemaname = 'app' and tablename = 'mail_outbox'
                  and indexdef like '%canonical_email(to_email)%'),
    'mail_outbox is indexed by the canonical form of its recipient');

select * from finish();
rollback;
