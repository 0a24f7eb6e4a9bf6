# expect: 5:9: Symbol not found: 'req.nope'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set req.nope = "x";
}
