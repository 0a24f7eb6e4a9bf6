# expect: 4:1: Only one default director possible.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
backend default { .host = "127.0.0.2"; }
