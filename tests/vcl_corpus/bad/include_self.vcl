# expect: 3:9: Recursive use of file "include_self.vcl"
vcl 4.1;
include "include_self.vcl";
backend default { .host = "127.0.0.1"; }
