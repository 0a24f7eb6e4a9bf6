# expect: 4:9: Cannot set both .via and .path.
vcl 4.1;
backend onloader { .host = "127.0.0.1"; .port = "8443"; }
backend dst { .path = "/run/dst.sock"; .via = onloader; }
sub vcl_recv { set req.backend_hint = dst; }
