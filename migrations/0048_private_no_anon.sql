-- anon needs no usage on schema private: anon executes one function,
-- api.stop_invitations, a definer that reaches private as its owner; no policy
-- lets anon read a table (app is not even visible to it), so no policy calls a
-- private helper as anon. Without usage, anon cannot list or call anything in
-- private, whatever a later grant on a function says.
-- depends: 0047_lean_indexes

revoke usage on schema private from anon;
