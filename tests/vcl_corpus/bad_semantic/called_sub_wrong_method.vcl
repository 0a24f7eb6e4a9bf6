# expect: 5:9: Cannot be set from subroutine 'vcl_recv'.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub f {
    set beresp.ttl = 1s;
}
sub vcl_recv {
    call f;
}
