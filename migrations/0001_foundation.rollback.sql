-- Drops the project's schemas. Roles and the auth schema stay: they are
-- cluster-wide or shared with Supabase, and other databases may use them.
drop schema if exists api cascade;
drop schema if exists private cascade;
drop schema if exists app cascade;
