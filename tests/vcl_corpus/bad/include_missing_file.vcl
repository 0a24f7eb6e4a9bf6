# expect: 3:9: Cannot read file 'does-not-exist.vcl' (No such file or directory)
vcl 4.1;
include "does-not-exist.vcl";
backend default { .host = "127.0.0.1"; }
