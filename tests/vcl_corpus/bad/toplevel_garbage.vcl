# expect: 3:1: Expected one of 'acl', 'sub', 'backend', 'probe', 'import', 'include' or 'vcl', found 'foo'
vcl 4.1;
foo bar;
backend default { .host = "127.0.0.1"; }
