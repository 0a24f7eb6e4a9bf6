# expect: 5:5: Inline-C not allowed
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    C{ VRT_log(ctx, "x"); }C
}
