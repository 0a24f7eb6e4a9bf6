# expect: 3:10: Unknown include flag
vcl 4.1;
include +blob "x.vcl";
backend default { .host = "127.0.0.1"; }
