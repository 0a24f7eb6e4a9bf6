# expect: 7:1: Expected one of 'acl', 'sub', 'backend', 'probe', 'import', 'include' or 'vcl', found '}'
vcl 4.1;
backend default { .host = "127.0.0.1"; }
sub vcl_recv {
    return (pass);
}
}
