# expect: inc/cycle_b.vcl:2:9: Recursive use of file "cycle_a.vcl"
vcl 4.1;
include "inc/cycle_a.vcl";
backend default { .host = "127.0.0.1"; }
