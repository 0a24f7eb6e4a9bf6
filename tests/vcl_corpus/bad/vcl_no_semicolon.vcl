# expect: 2:1: Expected 'vcl N.N;' found no semi-colon
vcl 4.1
backend default { .host = "127.0.0.1"; }
