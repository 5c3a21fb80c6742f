-- Functions in sql/ depend on these tables' row types: they go with them, and
-- the code mark is cleared so that the next migrate rebuilds sql/.
drop table if exists app.group_members cascade;
drop table if exists app.group_invites cascade;
drop table if exists app.groups cascade;
comment on schema api is null;
