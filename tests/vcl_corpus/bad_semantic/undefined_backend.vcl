# expect: 5:28: Undefined backend nosuch, first reference:
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set req.backend_hint = nosuch;
}
