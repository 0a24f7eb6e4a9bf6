# expect: 5:13: Expected return action name.
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (nope);
}
