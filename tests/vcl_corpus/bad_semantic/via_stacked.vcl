# expect: 5:71: Cannot stack .via backends at
vcl 4.1;
backend onloader { .host = "127.0.0.1"; .port = "8443"; }
backend hop { .host = "192.0.2.1"; .authority = "hop.example"; .via = onloader; }
backend dst { .host = "192.0.2.2"; .authority = "dst.example"; .via = hop; }
sub vcl_recv { set req.backend_hint = dst; if (req.url == "/") { set req.backend_hint = hop; } }
