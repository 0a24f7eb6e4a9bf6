# expect: 5:5: Symbol not found: 'std.log'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    std.log("x");
}
