# expect: 2:5: Don't play silly buggers with VCL version numbers
vcl 4.10;
backend default { .host = "127.0.0.1"; }
