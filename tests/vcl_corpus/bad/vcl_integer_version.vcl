# expect: 2:5: Expected a VCL version number (4.0 or 4.1) got '4'
vcl 4;
backend default { .host = "127.0.0.1"; }
