# expect: 5:9: Not available in subroutine 'vcl_recv'.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    if (beresp.status == 200) {}
}
