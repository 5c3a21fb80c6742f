-- Invariants checked on a live database (python -m gateway verify). The
-- functions of api hold these rules as they change rows; a manual fix in SQL,
-- a restored backup or a bug could leave them broken, and this is how an
-- operator finds out. Everything here only reads (ACCESS SHARE locks); the
-- command runs it in one REPEATABLE READ READ ONLY transaction, so every check
-- sees the same snapshot, under a statement timeout.

/**
 * One row per invariant: its name, the number of rows that break it, and up to
 * ten of their ids (sorted, as text). An invariant that holds has broken = 0.
 * `mail_max_attempts` is the mailer's MAIL_MAX_ATTEMPTS; `months_ahead` the
 * coming months whose audit partition must exist besides the current one.
 *
 * What each compares, and why:
 * - group_invite_use_count: joins are recorded per invite in two places: the
 *   member row (group_members.invite_id, gone when the member leaves) and the
 *   audit entry ('group.join', outcome 'joined', subject = the invite, kept
 *   until the retention drops it). use_count must equal the audited joins for
 *   invites created since the oldest audit entry still kept (older invites may
 *   have lost theirs), and may never be below the members still there.
 * - event_capacity / event_seats_taken: confirmed registrations at most the
 *   capacity; the seats_taken counter equal to them.
 * - group_member_count: a group's member_count (kept by create_group,
 *   join_group, leave_group and an account's deletion) equal to its rows in
 *   group_members; private.recount_group_members() sets wrong ones right.
 * - pair_registrations: a pair (pair_id) is made only by accepting an invite,
 *   which registers both people at once; a cancellation keeps the row. So every
 *   pair_id has exactly two registrations, of two people, for one event (at
 *   most two confirmed; one when a partner cancelled). There is no "one plus an
 *   open invite" state: an open invite carries no pair_id.
 * - accepted_pair_invite_registrations: an accepted invite names its pair and
 *   its invitee, and both people hold a registration of that pair.
 * - like_group_approvals: an approved group has approvals from authors at least
 *   min(authors, members). Authors are those at the decision who still are
 *   (event_authors added at or before decided_at): an author added later is not
 *   part of the decision.
 * - like_group_chat: an approved group has exactly one chat whose participants
 *   are its members and those same authors (an author removed after the
 *   decision stays in the chat, and is reported: the chat is not updated).
 * - unapproved_group_chat: a pending or rejected group has no chat.
 * - pending_groups_per_user: nobody is a member of two groups of one event
 *   whose status is pending (read from the groups, not the members' flag).
 * - mail_outbox_stuck: no unsent, uncancelled message with attempts at or past
 *   mail_max_attempts lacks failed_at (the worker would never try it again).
 * - audit_partitions: app.audit_log_pYYYYMM exists for this month and the
 *   next `months_ahead` (UTC), or app.audit_log_legacy covers the month.
 * - plain_text_secrets: invite codes, pair-invite tokens and stop tokens are
 *   stored as SHA-256 (32 bytes); code hints are the last 4 characters only;
 *   no audit entry or outbox message holds a key named token, code, secret or
 *   stop_token. (A pair invite's short code is stored as it is, by design: it
 *   is shown to its inviter, and only opens a preview and a token exchange.)
 */
create function private.verify(mail_max_attempts integer default 8, months_ahead integer default 2)
returns table (invariant text, broken bigint, ids text[])
language plpgsql stable security definer
set search_path = ''
-- One big query run now and then: compiling it (JIT) would cost more than it saves.
set jit = off
as $$
declare
    v_since timestamptz := (select pg_catalog.min(a.created_at) from app.audit_log a);
begin
    return query
    with
    joins as (
        select a.subject_id as invite_id, pg_catalog.count(*) as n
        from app.audit_log a
        where a.action = 'group.join' and a.outcome = 'joined' and a.subject_id is not null
        group by a.subject_id),
    members as (
        select m.invite_id, pg_catalog.count(*) as n
        from app.group_members m where m.invite_id is not null group by m.invite_id),
    bad_invites as (
        select i.id::text as id from app.group_invites i
        left join joins j on j.invite_id = i.id
        left join members m on m.invite_id = i.id
        where i.use_count < coalesce(m.n, 0)
           or (v_since is not null and i.created_at >= v_since
               and i.use_count <> coalesce(j.n, 0))
           or (v_since is null and i.use_count <> 0)),
    confirmed as (
        select r.event_id, pg_catalog.count(*) as n
        from app.registrations r where r.status = 'confirmed' group by r.event_id),
    over_capacity as (
        select e.id::text as id from app.events e join confirmed c on c.event_id = e.id
        where e.capacity is not null and c.n > e.capacity),
    seats as (
        select e.id::text as id from app.events e left join confirmed c on c.event_id = e.id
        where e.seats_taken <> coalesce(c.n, 0)),
    group_counts as (
        select m.group_id, pg_catalog.count(*) as n
        from app.group_members m group by m.group_id),
    member_counts as (
        select g.id::text as id from app.groups g left join group_counts c on c.group_id = g.id
        where g.member_count <> coalesce(c.n, 0)),
    pairs as (
        select r.pair_id::text as id from app.registrations r
        where r.pair_id is not null
        group by r.pair_id
        having pg_catalog.count(*) <> 2 or pg_catalog.count(distinct r.user_id) <> 2
            or pg_catalog.count(distinct r.event_id) <> 1),
    accepted as (
        select distinct i.id::text as id from app.pair_invites i
        left join app.registrations a
            on a.event_id = i.event_id and a.pair_id = i.pair_id and a.user_id = i.inviter_id
        left join app.registrations b
            on b.event_id = i.event_id and b.pair_id = i.pair_id and b.user_id = i.invitee_id
        where i.status = 'accepted'
          and (i.pair_id is null or i.invitee_id is null or a.id is null or b.id is null)),
    approved as (
        select g.id, g.event_id, g.decided_at from app.like_groups g where g.status = 'approved'),
    deciders as (
        select g.id as group_id, a.user_id
        from approved g
        join app.event_authors a on a.event_id = g.event_id and a.created_at <= g.decided_at),
    like_members as (
        select g.id as group_id, m.user_id
        from approved g
        join app.like_group_members m on m.event_id = g.event_id and m.group_id = g.id),
    short_tally as (
        select g.id::text as id from approved g
        left join (select d.group_id, pg_catalog.count(*) as n from deciders d
                   group by d.group_id) dc on dc.group_id = g.id
        left join (select m.group_id, pg_catalog.count(*) as n from like_members m
                   group by m.group_id) mc on mc.group_id = g.id
        left join (select v.group_id, pg_catalog.count(*) as n from app.like_group_approvals v
                   join deciders d on d.group_id = v.group_id and d.user_id = v.author_id
                   where v.approved group by v.group_id) rc on rc.group_id = g.id
        where coalesce(rc.n, 0) < least(coalesce(dc.n, 0), coalesce(mc.n, 0))),
    expected as (
        select m.group_id, m.user_id from like_members m
        union
        select d.group_id, d.user_id from deciders d),
    seated as (
        select c.like_group_id as group_id, p.user_id
        from approved g
        join app.chats c on c.event_id = g.event_id and c.like_group_id = g.id
        join app.chat_participants p on p.event_id = c.event_id and p.chat_id = c.id),
    bad_chats as (
        select g.id::text as id from approved g
        left join (select c.like_group_id, pg_catalog.count(*) as n from app.chats c
                   group by c.like_group_id) cc on cc.like_group_id = g.id
        where coalesce(cc.n, 0) <> 1
        union
        select coalesce(e.group_id, s.group_id)::text
        from expected e full join seated s on s.group_id = e.group_id and s.user_id = e.user_id
        where e.group_id is null or s.group_id is null),
    undecided_chats as (
        select g.id::text as id from app.like_groups g
        where g.status <> 'approved'
          and exists (select from app.chats c
                      where c.event_id = g.event_id and c.like_group_id = g.id)),
    twice_pending as (
        select m.user_id::text as id from app.like_group_members m
        join app.like_groups g on g.event_id = m.event_id and g.id = m.group_id
        where g.status = 'pending'
        group by m.event_id, m.user_id
        having pg_catalog.count(*) > 1),
    stuck as (
        select o.id::text as id from app.mail_outbox o
        where o.sent_at is null and o.cancelled_at is null and o.failed_at is null
          and o.attempts >= greatest(verify.mail_max_attempts, 1)),
    missing_partitions as (
        select 'app.audit_log_p' || pg_catalog.to_char(s.month, 'YYYYMM') as id
        from pg_catalog.generate_series(
            pg_catalog.date_trunc('month', pg_catalog.now() at time zone 'UTC'),
            pg_catalog.date_trunc('month', pg_catalog.now() at time zone 'UTC')
                + pg_catalog.make_interval(months => greatest(verify.months_ahead, 0)),
            interval '1 month') s(month)
        where not exists (
            select from pg_catalog.pg_inherits h
            join pg_catalog.pg_class c on c.oid = h.inhrelid
            where h.inhparent = 'app.audit_log'::regclass
              and (c.relname = 'audit_log_p' || pg_catalog.to_char(s.month, 'YYYYMM')
                   -- or app.audit_log_legacy (migration 0008), which covers the
                   -- months up to the one after it was attached
                   or c.relname = 'audit_log_legacy'
                      and pg_catalog.substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                              'TO \(''([^'']+)''\)')::timestamptz
                          >= (s.month at time zone 'UTC') + interval '1 month'))),
    secrets as (
        select 'app.group_invites:' || i.id::text as id from app.group_invites i
        where pg_catalog.length(i.code_hash) <> 32 or pg_catalog.length(i.code_hint) > 4
        union all
        select 'app.pair_invite_tokens:' || t.invite_id::text from app.pair_invite_tokens t
        where pg_catalog.length(t.token_hash) <> 32
        union all
        select 'app.mail_stop_tokens:' || t.ctid::text from app.mail_stop_tokens t
        where pg_catalog.length(t.token_hash) <> 32
        union all
        select 'app.audit_log:' || a.id::text from app.audit_log a
        where a.details ?| array['token', 'code', 'secret', 'stop_token']
        union all
        select 'app.mail_outbox:' || o.id::text from app.mail_outbox o
        where o.data ?| array['token', 'code', 'secret', 'stop_token']),
    offenders (invariant, id) as (
        select 'group_invite_use_count', id from bad_invites
        union all select 'event_capacity', id from over_capacity
        union all select 'event_seats_taken', id from seats
        union all select 'group_member_count', id from member_counts
        union all select 'pair_registrations', id from pairs
        union all select 'accepted_pair_invite_registrations', id from accepted
        union all select 'like_group_approvals', id from short_tally
        union all select 'like_group_chat', id from bad_chats
        union all select 'unapproved_group_chat', id from undecided_chats
        union all select 'pending_groups_per_user', id from twice_pending
        union all select 'mail_outbox_stuck', id from stuck
        union all select 'audit_partitions', id from missing_partitions
        union all select 'plain_text_secrets', id from secrets),
    names (invariant, ord) as (
        select n.name, n.ord from pg_catalog.unnest(array[
            'group_invite_use_count', 'event_capacity', 'event_seats_taken',
            'group_member_count', 'pair_registrations', 'accepted_pair_invite_registrations',
            'like_group_approvals', 'like_group_chat', 'unapproved_group_chat',
            'pending_groups_per_user', 'mail_outbox_stuck', 'audit_partitions',
            'plain_text_secrets']) with ordinality n(name, ord))
    select n.invariant,
           (select pg_catalog.count(*) from offenders f where f.invariant = n.invariant),
           coalesce((select pg_catalog.array_agg(x.id order by x.id) from (
                         select f.id from offenders f where f.invariant = n.invariant
                         order by f.id limit 10) x), '{}')
    from names n
    order by n.ord;
end;
$$;
grant execute on function private.verify(integer, integer) to service_role;
