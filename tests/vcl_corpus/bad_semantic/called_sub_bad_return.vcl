# expect: 5:13: Invalid return "deliver"
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub f {
    return (deliver);
}
sub vcl_recv {
    call f;
}
