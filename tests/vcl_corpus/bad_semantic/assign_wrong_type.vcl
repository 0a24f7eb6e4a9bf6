# expect: 5:23: Expression has type STRING, expected INT
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_deliver {
    set resp.status = "x";
}
