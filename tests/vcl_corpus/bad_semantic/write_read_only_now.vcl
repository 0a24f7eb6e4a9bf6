# expect: 5:15: Expression has type DURATION, expected TIME
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set now = 1s;
}
