# expect: 4:23: .host used as authority can not be an ip address with .via.
vcl 4.1;
backend onloader { .host = "127.0.0.1"; .port = "8443"; }
backend dst { .host = "192.0.2.2:443"; .via = onloader; }
sub vcl_recv { set req.backend_hint = dst; }
