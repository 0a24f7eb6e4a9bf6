# expect: 2:1: VCL version declaration missing
backend default { .host = "127.0.0.1"; }
