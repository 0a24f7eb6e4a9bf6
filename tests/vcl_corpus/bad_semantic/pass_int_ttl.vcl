# expect: 5:18: Expression has type INT, expected DURATION
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (pass(1));
}
