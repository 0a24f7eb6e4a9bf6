# expect: 5:24: Too many digits for integer.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set req.http.x-n = 1234567890123456;
}
