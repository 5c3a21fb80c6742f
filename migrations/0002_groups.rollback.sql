drop table if exists app.group_members;
drop table if exists app.group_invites;
drop table if exists app.groups;
