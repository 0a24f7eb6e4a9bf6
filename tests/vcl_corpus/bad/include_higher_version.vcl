# expect: inc/v41.vcl:2:1: VCL version 4.1 higher than the top level version 4.0
vcl 4.0;
include "inc/v41.vcl";
backend default { .host = "127.0.0.1"; }
