# expect: 5:20: Comparison of different types: DURATION '>' INT
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_backend_response {
    if (beresp.ttl > 1) {}
}
