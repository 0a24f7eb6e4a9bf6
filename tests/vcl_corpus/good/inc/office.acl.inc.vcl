# ACL entries, included inside an acl body (include works wherever a token may stand).
"192.0.2.0"/24;
! "192.0.2.1";
