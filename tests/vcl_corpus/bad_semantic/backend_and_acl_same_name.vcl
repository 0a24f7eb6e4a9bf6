# expect: 4:5: Name 'a' is already defined as a backend.
vcl 4.1;
backend a { .host = "127.0.0.1"; }
acl a { "127.0.0.1"; }
sub vcl_recv { if (client.ip ~ a) { set req.backend_hint = a; } }
