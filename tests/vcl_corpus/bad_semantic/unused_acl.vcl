# expect: 4:5: Unused acl local, defined:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
acl local { "127.0.0.1"; }
