# expect: 5:9: Variable is read only.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    set client.ip = "1.2.3.4";
}
