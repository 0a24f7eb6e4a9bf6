# expect: 5:12: Expected '(' got 'pass'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return pass;
}
