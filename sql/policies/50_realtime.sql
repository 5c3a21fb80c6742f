-- Supabase Realtime, only where its schema exists (a Supabase project): who may
-- receive the private broadcasts private.publish sends with realtime.send. A
-- signed-in user reads a channel's broadcasts exactly when api.can_subscribe
-- allows its topic; realtime.topic() names the channel Supabase's Realtime server
-- is authorising. The policy depends on api.can_subscribe, which a rebuild of
-- sql/ replaces in place, so the policy stays; it is made here when missing (a
-- new text needs a new policy name). Other policies on realtime.messages are
-- left alone.
do $realtime$
begin
    if pg_catalog.to_regclass('realtime.messages') is null
       or pg_catalog.to_regprocedure('realtime.topic()') is null
       or exists (select from pg_catalog.pg_policies p
                  where p.schemaname = 'realtime' and p.tablename = 'messages'
                    and p.policyname = 'Subscribers can receive the broadcasts of their topics') then
        return;
    end if;
    execute $policy$
        create policy "Subscribers can receive the broadcasts of their topics"
            on realtime.messages
            for select to authenticated
            using (
                realtime.messages.extension = 'broadcast'
                and realtime.messages.topic = (select realtime.topic())
                and (select api.can_subscribe((select realtime.topic())))
            )
    $policy$;
end
$realtime$;
