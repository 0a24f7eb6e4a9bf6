# expect: 3:15: glob pattern matched no files.
vcl 4.1;
include +glob "inc/nothing-*.vcl";
backend default { .host = "127.0.0.1"; }
