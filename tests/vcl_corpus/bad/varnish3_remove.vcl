# expect: 5:5: Expected an action, 'if', '{' or '}' got 'remove'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    remove req.http.cookie;
}
