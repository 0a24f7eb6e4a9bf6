# expect: 2:1: VCL version 5.0 not supported.
vcl 5.0;
backend default { .host = "127.0.0.1"; }
