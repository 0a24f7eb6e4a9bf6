# expect: 5:13: Invalid return "fetch"
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (fetch);
}
