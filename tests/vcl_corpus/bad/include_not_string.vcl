# expect: 3:9: include not followed by string constant.
vcl 4.1;
include foo;
backend default { .host = "127.0.0.1"; }
