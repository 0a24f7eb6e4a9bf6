# expect: 5:9: Cannot be set in subroutine 'vcl_recv'.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set beresp.ttl = 1s;
}
