# expect: 5:9: Expression has type REAL, expected BOOL
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (1.5) {}
}
