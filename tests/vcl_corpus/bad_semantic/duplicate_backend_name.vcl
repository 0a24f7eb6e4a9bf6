# expect: 5:9: Backend 'a' redefined.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
backend a { .host = "127.0.0.2"; }
backend a { .host = "127.0.0.3"; }
sub vcl_recv { set req.backend_hint = a; }
