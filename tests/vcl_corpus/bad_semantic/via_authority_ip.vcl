# expect: 4:66: .authority can not be an ip address with .via.
vcl 4.1;
backend onloader { .host = "127.0.0.1"; .port = "8443"; }
backend dst { .host = "192.0.2.2"; .via = onloader; .authority = "192.0.2.2"; }
sub vcl_recv { set req.backend_hint = dst; }
